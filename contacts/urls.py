from django.urls import path

from contacts import notification_views, privacy_views, views
from contacts.imports import mapping_views
from contacts.imports import views as import_views
from contacts.intake import views as intake
from contacts.intake import webhook_views
from contacts.reports import views as dashboard_views
from contacts.sales import activity_views, follow_up_views, my_settings, team_views
from contacts.sales import pipeline as pipeline_views
from contacts.sales import views as queue_views

urlpatterns = [
    path("dashboard/conversion/", dashboard_views.conversion_panel, name="dashboard-conversion"),
    path("dashboard/velocity/", dashboard_views.velocity_panel, name="dashboard-velocity"),
    path("dashboard/sources/", dashboard_views.sources_panel, name="dashboard-sources"),
    path("dashboard/sla/", dashboard_views.sla_panel, name="dashboard-sla"),
    path("dashboard/touchpoints/", dashboard_views.touchpoints_panel, name="dashboard-touchpoints"),
    path("contacts/", views.contact_list, name="contact-list"),
    path("contacts/new/", views.contact_create, name="contact-create"),
    path("contacts/export.csv", views.contact_export, name="contact-export"),
    path("contacts/import/", import_views.import_upload, name="contact-import"),
    path("contacts/import/<int:pk>/", import_views.import_job, name="contact-import-job"),
    path(
        "contacts/import/<int:pk>/errors.csv",
        import_views.import_errors_csv,
        name="contact-import-errors",
    ),
    path(
        "contacts/import/<int:pk>/summary/",
        mapping_views.import_summary,
        name="contact-import-summary",
    ),
    path(
        "contacts/import/<int:pk>/mapping/save/",
        mapping_views.import_mapping_save,
        name="contact-import-mapping-save",
    ),
    path(
        "contacts/import/<int:pk>/mapping/apply/",
        mapping_views.import_mapping_apply,
        name="contact-import-mapping-apply",
    ),
    path("contacts/<int:pk>/", views.contact_detail, name="contact-detail"),
    path("contacts/<int:pk>/edit/", views.contact_edit, name="contact-edit"),
    path(
        "contacts/<int:pk>/email-status/clear/",
        views.contact_email_status_clear,
        name="contact-email-status-clear",
    ),
    path("dashboard/funnel/", dashboard_views.funnel_panel, name="funnel-panel"),
    path("contacts/<int:pk>/export.json", privacy_views.contact_export, name="contact-export-json"),
    path("contacts/<int:pk>/erase/", privacy_views.contact_erase, name="contact-erase"),
    path("queue/", queue_views.queue, name="queue"),
    path("queue/claim-next/", queue_views.queue_claim_next, name="queue-claim-next"),
    path("queue/<int:pk>/claim/", queue_views.queue_claim, name="queue-claim"),
    path("queue/mine/", queue_views.my_leads, name="queue-mine"),
    path("queue/leads/<int:pk>/", queue_views.queue_lead, name="queue-lead"),
    path("queue/team/", team_views.team_leads, name="queue-team"),
    path(
        "queue/team/<int:pk>/reassign/",
        team_views.team_lead_reassign,
        name="queue-team-reassign",
    ),
    path("queue/team/<int:pk>/release/", team_views.team_lead_release, name="queue-team-release"),
    path("notifications/", notification_views.notifications_page, name="notifications"),
    path("notifications/bell/", notification_views.notifications_bell, name="notifications-bell"),
    path(
        "notifications/read-all/",
        notification_views.notifications_read_all,
        name="notifications-read-all",
    ),
    path(
        "notifications/<int:pk>/open/",
        notification_views.notification_open,
        name="notification-open",
    ),
    path(
        "notifications/settings/",
        notification_views.notification_settings,
        name="notification-settings",
    ),
    path(
        "queue/leads/<int:pk>/estimate/",
        queue_views.queue_lead_estimate,
        name="queue-lead-estimate",
    ),
    path("pipeline/", pipeline_views.pipeline_view, name="pipeline"),
    path("queue/today/", follow_up_views.my_day, name="my-day"),
    path("me/settings/", my_settings.my_settings, name="my-settings"),
    path("queue/follow-ups/new/", follow_up_views.follow_up_add, name="follow-up-add"),
    path("queue/follow-ups/<int:pk>/done/", follow_up_views.follow_up_done, name="follow-up-done"),
    path(
        "queue/follow-ups/<int:pk>/reschedule/",
        follow_up_views.follow_up_move,
        name="follow-up-move",
    ),
    path(
        "contacts/<int:pk>/activities/",
        activity_views.contact_activities,
        name="contact-activities",
    ),
    path(
        "contacts/<int:pk>/activities/email/",
        activity_views.contact_activity_email,
        name="contact-activity-email",
    ),
    path(
        "contacts/<int:pk>/activities/note/",
        activity_views.contact_activity_add,
        {"kind": "note"},
        name="contact-activity-note",
    ),
    path(
        "contacts/<int:pk>/activities/call/",
        activity_views.contact_activity_add,
        {"kind": "call"},
        name="contact-activity-call",
    ),
    path(
        "contacts/<int:pk>/activities/meeting/",
        activity_views.contact_activity_add,
        {"kind": "meeting"},
        name="contact-activity-meeting",
    ),
    path("queue/templates/", activity_views.email_template_list, name="email-templates"),
    path("queue/templates/new/", activity_views.email_template_edit, name="email-template-new"),
    path(
        "queue/templates/<int:pk>/",
        activity_views.email_template_edit,
        name="email-template-edit",
    ),
    path("f/<slug:key>/", intake.form_post, name="form-post"),
    path("t/", intake.beacon, name="beacon"),
    path("hooks/in/<slug:key>/", webhook_views.inbound_webhook, name="inbound-webhook"),
    path("t.js", intake.tracker_js, name="tracker-js"),
]
