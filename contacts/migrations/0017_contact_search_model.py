from django.db import migrations, models


class Migration(migrations.Migration):
    """The model of contact_search (0012), unmanaged: only the migration state changes."""

    dependencies = [
        ("contacts", "0016_prodci_notification"),
    ]

    operations = [
        migrations.CreateModel(
            name="ContactSearch",
            fields=[
                ("contact_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("email", models.CharField(max_length=254, null=True)),
                ("first_name", models.CharField(max_length=100, null=True)),
                ("last_name", models.CharField(max_length=100, null=True)),
                ("company", models.CharField(max_length=200, null=True)),
            ],
            options={
                "db_table": "contact_search",
                "managed": False,
            },
        ),
    ]
