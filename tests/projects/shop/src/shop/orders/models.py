from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    placed = models.DateTimeField(auto_now_add=True)
