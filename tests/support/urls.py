"""The real URLs plus views that fail on purpose, for the error-envelope tests."""

from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


class ExplodingApiView(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError("secret internal detail")


class EchoApiView(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        return Response({"received": request.data})


def exploding_django_view(request):
    raise RuntimeError("secret internal detail")


@require_GET
def get_only_django_view(request):
    return HttpResponse("ok")


urlpatterns = [
    path("api/test/explode", ExplodingApiView.as_view()),
    path("api/test/echo", EchoApiView.as_view()),
    path("api/test/explode-plain", exploding_django_view),
    path("api/test/get-only", get_only_django_view),
    path("", include("claraverse.urls")),
]
