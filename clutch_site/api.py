"""The REST API under /api/: bearer tokens, JSON errors that say what to fix."""

from django.core.exceptions import RequestDataTooBig
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from clutch_site.services import api_token_authenticate
from fahrtenbuch.api import router as trips_router
from fahrtenbuch.services import ApplicationError
from garage.api import router as garage_router


class BearerToken(HttpBearer):
    def authenticate(self, request, token: str):
        return api_token_authenticate(raw=token)


api = NinjaAPI(
    title="clutch API",
    version="1",
    description="Route, submit and follow LLM trips. Send `Authorization: Bearer <token>`; "
    "create a token with `manage.py create_api_token USERNAME` or in the admin.",
    auth=BearerToken(),
    urls_namespace="api",
)
api.add_router("/", trips_router)
api.add_router("/", garage_router)


@api.exception_handler(ApplicationError)
def application_error(request, exc: ApplicationError):
    return api.create_response(request, {"detail": exc.message}, status=exc.status)


@api.exception_handler(AuthenticationError)
def unauthenticated(request, exc):
    return api.create_response(
        request,
        {
            "detail": "Missing or invalid API token. Send 'Authorization: Bearer <token>' "
            "(create one with `manage.py create_api_token USERNAME`)."
        },
        status=401,
    )


def _where(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "payload", "query", "filters", "path")]
    return ".".join(parts) or "request"


@api.exception_handler(ValidationError)
def invalid(request, exc: ValidationError):
    problems = "; ".join(
        f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors
    )
    return api.create_response(
        request, {"detail": f"Invalid request: {problems}", "errors": exc.errors}, status=422
    )


@api.exception_handler(RequestDataTooBig)
def too_big(request, exc):
    return api.create_response(request, {"detail": f"Request body too large: {exc}"}, status=413)


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)
