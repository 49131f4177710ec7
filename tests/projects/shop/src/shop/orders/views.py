import json

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import wsloop
from shop.orders.models import Order


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """A new order, announced to the shop's staff page once it is saved."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST["item"])
        event = json.dumps({"order": order.pk, "item": order.item})
        wsloop.publish_on_commit("orders", event, broadcast=True)
    return JsonResponse({"order": order.pk})
