import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Last activity and source are served by the dashboard's composite indexes
    (contact_last_activity_desc, contact_source_activity, PostgreSQL): their single-column
    indexes only made every contact write dearer."""

    dependencies = [
        ('contacts', '0008_sales_queue'),
        ('contacts', '0009_dashboard'),
    ]

    operations = [
        migrations.AlterField(
            model_name='contact',
            name='last_activity_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='last activity'),
        ),
        migrations.AlterField(
            model_name='contact',
            name='source',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='contacts', to='contacts.leadsource', verbose_name='source'),
        ),
    ]
