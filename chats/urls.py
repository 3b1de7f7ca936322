from django.urls import path

from . import views

urlpatterns = [
    path("sync", views.ChatSyncView.as_view(), name="chats-sync"),
    path("<str:chat_id>", views.ChatDetailView.as_view(), name="chat"),
]
