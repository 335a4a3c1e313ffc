import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# PostgreSQL: the list search's trigram indexes move off the contact table into a narrow
# contact_search table (id, email, names, company) that triggers keep in step. Every score or
# last-activity write of a contact is a non-HOT update, which inserts into every index of its
# table: four trigram GIN indexes made each such write several times dearer. Only changes of
# the searched columns now touch them.
COLUMNS = ("email", "first_name", "last_name", "company")
DIFFERS = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in COLUMNS)
LIST = ", ".join(COLUMNS)

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"""CREATE TABLE contact_search (
        contact_id bigint PRIMARY KEY,
        email varchar(254), first_name varchar(100), last_name varchar(100), company varchar(200)
    )""",
    f"INSERT INTO contact_search (contact_id, {LIST}) SELECT id, {LIST} FROM contacts_contact",
    *(
        f"CREATE INDEX contact_search_{column}_trgm ON contact_search "
        f"USING gin (upper({column}::text) gin_trgm_ops)"
        for column in COLUMNS
    ),
    *(f"DROP INDEX IF EXISTS contact_{column}_trgm" for column in COLUMNS),
    # Inserts and deletes per statement (an import inserts thousands at once).
    f"""CREATE FUNCTION contact_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO contact_search (contact_id, {LIST}) SELECT id, {LIST} FROM new_contacts;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER contact_search_insert AFTER INSERT ON contacts_contact
        REFERENCING NEW TABLE AS new_contacts FOR EACH STATEMENT
        EXECUTE FUNCTION contact_search_insert()""",
    """CREATE FUNCTION contact_search_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM contact_search AS s USING old_contacts AS o WHERE s.contact_id = o.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER contact_search_delete AFTER DELETE ON contacts_contact
        REFERENCING OLD TABLE AS old_contacts FOR EACH STATEMENT
        EXECUTE FUNCTION contact_search_delete()""",
    # Updates per row, and only when a searched column is set and changes: score and last
    # activity writes never fire it.
    f"""CREATE FUNCTION contact_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contact_search SET email = NEW.email, first_name = NEW.first_name,
            last_name = NEW.last_name, company = NEW.company
        WHERE contact_id = NEW.id;
        RETURN NULL;
    END $$""",
    f"""CREATE TRIGGER contact_search_update AFTER UPDATE OF {LIST} ON contacts_contact
        FOR EACH ROW WHEN ({DIFFERS}) EXECUTE FUNCTION contact_search_update()""",
    """CREATE FUNCTION contact_search_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE contact_search;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER contact_search_truncate AFTER TRUNCATE ON contacts_contact
        FOR EACH STATEMENT EXECUTE FUNCTION contact_search_truncate()""",
    "ANALYZE contact_search",
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS contact_search_insert ON contacts_contact",
    "DROP TRIGGER IF EXISTS contact_search_delete ON contacts_contact",
    "DROP TRIGGER IF EXISTS contact_search_update ON contacts_contact",
    "DROP TRIGGER IF EXISTS contact_search_truncate ON contacts_contact",
    *(
        f"DROP FUNCTION IF EXISTS contact_search_{kind}()"
        for kind in ("insert", "delete", "update", "truncate")
    ),
    "DROP TABLE IF EXISTS contact_search",
    *(
        f"CREATE INDEX IF NOT EXISTS contact_{column}_trgm ON contacts_contact "
        f"USING gin (upper({column}::text) gin_trgm_ops)"
        for column in COLUMNS
    ),
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in FORWARD:
            schema_editor.execute(sql)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in BACKWARD:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    """The contact search's own table (PostgreSQL) and partial indexes for the two sparse
    foreign keys: each contact write inserts into fewer indexes."""

    dependencies = [
        ('contacts', '0011_contact_time_zone'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='contact',
            name='owner',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='owned_contacts', to=settings.AUTH_USER_MODEL, verbose_name='owner'),
        ),
        migrations.AlterField(
            model_name='contact',
            name='referred_by',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='referrals', to='contacts.contact', verbose_name='referred by'),
        ),
        migrations.AddIndex(
            model_name='contact',
            index=models.Index(condition=models.Q(('referred_by__isnull', False)), fields=['referred_by'], name='contact_referred_by'),
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]
