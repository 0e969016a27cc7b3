"""The demo shop's URLs plus ``bench/constant``: the cheapest authenticated DRF view there is,
the yardstick of the status endpoint under load."""

from typing import Any

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from testproject.urls import urlpatterns as shop_urlpatterns


class ConstantView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response({"status": 0, "status_name": "Ready"})


urlpatterns = [path("bench/constant", ConstantView.as_view()), *shop_urlpatterns]
