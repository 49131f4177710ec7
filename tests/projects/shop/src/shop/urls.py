from django.urls import path

from shop.orders import views

urlpatterns = [
    path("healthz", views.healthz),
    path("orders/", views.place_order),
]
