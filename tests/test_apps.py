"""The app's system check: wsloop's runserver must be the one Django picks."""

from django.test import override_settings

from wsloop.apps import check_runserver_order

APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]


def test_wsloop_before_staticfiles_passes():
    with override_settings(INSTALLED_APPS=["wsloop", *APPS, "django.contrib.staticfiles"]):
        assert check_runserver_order() == []


def test_wsloop_after_staticfiles_warns():
    with override_settings(INSTALLED_APPS=[*APPS, "django.contrib.staticfiles", "wsloop"]):
        (warning,) = check_runserver_order()
    assert warning.id == "wsloop.W001"
    assert "comes from 'django.contrib.staticfiles'" in warning.msg
    assert "will not serve websockets" in warning.msg


def test_without_staticfiles_any_order_passes():
    with override_settings(INSTALLED_APPS=[*APPS, "wsloop"]):
        assert check_runserver_order() == []
