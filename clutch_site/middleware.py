"""Django's own middleware, without a thread switch per hook under ASGI.

Under Daphne every request goes through the middleware in async mode, where Django's
MiddlewareMixin runs each process_request and process_response on the sync thread: two
thread switches per middleware, a dozen per request, a few milliseconds of a short API call.
The middleware below only read headers and cookies and set attributes or lazy objects (no
database, no blocking I/O), so here they run inline. Sessions and messages, whose hooks may
read or write the session table, keep Django's behaviour on pages; the REST API under
/api/ authenticates by bearer token and uses neither (nor request.user), so its requests
skip them.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware

API_PREFIX = "/api/"  # clutch_site/urls.py mounts the REST API here


class Inline:
    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class InlineSecurityMiddleware(Inline, SecurityMiddleware):
    pass


class InlineCommonMiddleware(Inline, CommonMiddleware):
    pass


class InlineCsrfViewMiddleware(Inline, CsrfViewMiddleware):
    """Only while CSRF_USE_SESSIONS is off (the default): the token is in a cookie."""


class InlineAuthenticationMiddleware(Inline, AuthenticationMiddleware):
    """Sets request.user as a lazy object: the user is read when a view asks, on its thread.
    The API (no session) skips it: its views know the caller as request.auth."""

    def process_request(self, request):
        if not request.path_info.startswith(API_PREFIX):
            super().process_request(request)


class InlineXFrameOptionsMiddleware(Inline, XFrameOptionsMiddleware):
    pass


class ApiSkips:
    """Pages keep Django's behaviour; a request to the token-authenticated API skips this
    middleware (no session, no messages). Django calls a middleware through __call__ in both
    modes; in async mode get_response returns the awaitable the caller awaits."""

    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class PageSessionMiddleware(ApiSkips, SessionMiddleware):
    pass


class PageMessageMiddleware(ApiSkips, MessageMiddleware):
    pass
