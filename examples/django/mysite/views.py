"""Views of the Django example: a form posted with its CSRF token, and a page whose link
shows that Django sees the mount point (SCRIPT_NAME)."""
from django.http import JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse


def index(request):
    if request.method == "POST":
        return render(request, "mysite/thanks.html", {"name": request.POST.get("name", "")})
    return render(request, "mysite/form.html")


def user(request, uid):
    return JsonResponse({
        "user": uid,
        "link": reverse("user", args=[uid]),
        "script_name": request.META.get("SCRIPT_NAME"),
        "style": static("mysite/style.css"),
    })
