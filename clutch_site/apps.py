from django.apps import AppConfig


class ClutchSiteConfig(AppConfig):
    name = "clutch_site"
    verbose_name = "Accounts and API tokens"
