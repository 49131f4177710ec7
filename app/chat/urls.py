from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("chat/<slug:room>/", views.room, name="room"),
    path("chat/<slug:room>/send", views.send, name="send"),
    path("notify", views.notify, name="notify"),
    path("announce", views.announce, name="announce"),
]
