from django.apps import AppConfig


class FahrtenbuchConfig(AppConfig):
    name = "fahrtenbuch"
    verbose_name = "Fahrtenbuch (trips, spend, learning)"
