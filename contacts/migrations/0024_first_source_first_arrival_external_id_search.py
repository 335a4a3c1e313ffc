import django.db.models.deletion
from django.db import migrations, models

# Issue 14, points 2 and 5.
# - Contact.first_source: the first source a contact had, kept when its source changes later;
#   filled from today's source (the best first touch known).
# - StageStay.contact, first_arrival and first_source: the sources panel counts people (a
#   contact once per stage, at its first move up into it) by the contact's source as it is now
#   (stays now carry the contact's current source and first source, kept in step). Filled from
#   the stage history and the contacts, as contacts.reports.rollups writes them.
# - contact_search.external_id (PostgreSQL): the list search finds a contact by its external id;
#   the triggers of 0012 copy the column too.
STAGES = ["suspect", "lead", "mql", "hmql", "sql", "client", "ambassador"]


def rank(column):
    whens = " ".join(f"WHEN '{stage}' THEN {n}" for n, stage in enumerate(STAGES))
    return f"(CASE {column} {whens} END)"


UP = f"{rank('to_stage')} > {rank('from_stage')}"
# One pass over the stage history (UPDATE … FROM: PostgreSQL, and SQLite since 3.33).
STAYS_FILL = f"""
UPDATE contacts_stagestay SET contact_id = h.contact_id, first_arrival = (h.up AND h.arrival = 1),
    source_id = k.source_id, first_source_id = k.first_source_id
FROM (
    SELECT id, contact_id, {UP} AS up,
           ROW_NUMBER() OVER (PARTITION BY contact_id, to_stage, {UP} ORDER BY at, id) AS arrival
    FROM contacts_stagechange
) h
JOIN contacts_contact k ON k.id = h.contact_id
WHERE h.id = contacts_stagestay.stage_change_id
"""

SEARCH_COLUMNS = ("email", "first_name", "last_name", "company", "external_id")
SEARCH_LIST = ", ".join(SEARCH_COLUMNS)
SEARCH_DIFFERS = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in SEARCH_COLUMNS)
SEARCH_FORWARD = [
    "ALTER TABLE contact_search ADD COLUMN external_id varchar(200)",
    "UPDATE contact_search s SET external_id = c.external_id FROM contacts_contact c "
    "WHERE c.id = s.contact_id AND c.external_id IS NOT NULL",
    "CREATE INDEX contact_search_external_id_trgm ON contact_search "
    "USING gin (upper(external_id::text) gin_trgm_ops)",
    f"""CREATE OR REPLACE FUNCTION contact_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO contact_search (contact_id, {SEARCH_LIST})
        SELECT id, {SEARCH_LIST} FROM new_contacts;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION contact_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contact_search SET email = NEW.email, first_name = NEW.first_name,
            last_name = NEW.last_name, company = NEW.company, external_id = NEW.external_id
        WHERE contact_id = NEW.id;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER contact_search_update ON contacts_contact",
    f"""CREATE TRIGGER contact_search_update AFTER UPDATE OF {SEARCH_LIST} ON contacts_contact
        FOR EACH ROW WHEN ({SEARCH_DIFFERS}) EXECUTE FUNCTION contact_search_update()""",
    "ANALYZE contact_search",
]
OLD_COLUMNS = SEARCH_COLUMNS[:-1]
OLD_LIST = ", ".join(OLD_COLUMNS)
SEARCH_BACKWARD = [
    f"""CREATE OR REPLACE FUNCTION contact_search_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO contact_search (contact_id, {OLD_LIST}) SELECT id, {OLD_LIST} FROM new_contacts;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION contact_search_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contact_search SET email = NEW.email, first_name = NEW.first_name,
            last_name = NEW.last_name, company = NEW.company
        WHERE contact_id = NEW.id;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER contact_search_update ON contacts_contact",
    f"""CREATE TRIGGER contact_search_update AFTER UPDATE OF {OLD_LIST} ON contacts_contact
        FOR EACH ROW WHEN ({" OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in OLD_COLUMNS)})
        EXECUTE FUNCTION contact_search_update()""",
    "DROP INDEX IF EXISTS contact_search_external_id_trgm",
    "ALTER TABLE contact_search DROP COLUMN IF EXISTS external_id",
]


def forward(apps, schema_editor):
    schema_editor.execute(
        "UPDATE contacts_contact SET first_source_id = source_id "
        "WHERE source_id IS NOT NULL AND first_source_id IS NULL"
    )
    schema_editor.execute(STAYS_FILL)
    if schema_editor.connection.vendor == "postgresql":
        # The updates above queued the deferred foreign-key checks: run them now, or the DDL
        # that follows on these tables (triggers, the new index) is refused.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")
        for sql in SEARCH_FORWARD:
            schema_editor.execute(sql)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in SEARCH_BACKWARD:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0023_custom_fields"),
    ]

    operations = [
        migrations.AddField(
            model_name="contact",
            name="first_source",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="contacts.leadsource",
                verbose_name="first source",
            ),
        ),
        migrations.AddField(
            model_name="stagestay",
            name="contact",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="contacts.contact",
            ),
        ),
        migrations.AddField(
            model_name="stagestay",
            name="first_source",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="contacts.leadsource",
            ),
        ),
        migrations.AddField(
            model_name="stagestay",
            name="first_arrival",
            field=models.BooleanField(
                db_default=False, default=False, verbose_name="first arrival"
            ),
        ),
        # State only: the table is contact_search's, unmanaged; forward() adds the column.
        migrations.AddField(
            model_name="contactsearch",
            name="external_id",
            field=models.CharField(max_length=200, null=True),
        ),
        migrations.RunPython(forward, backward, elidable=False),
        migrations.AddIndex(
            model_name="stagestay",
            index=models.Index(
                condition=models.Q(("first_arrival", True)),
                fields=["left_at", "next_stage", "source", "first_source"],
                name="stagestay_first_arrival",
            ),
        ),
        migrations.AddIndex(
            model_name="stagestay",
            index=models.Index(fields=["contact"], name="stagestay_contact"),
        ),
    ]
