"""Inquiries get a UUID primary key.

An integer key cannot be changed into a UUID in place on every database, so the inquiries are
copied into a new table under new keys, the old table is dropped and the new one takes its
name. Nothing refers to an inquiry, so no other table changes.
"""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

BATCH = 2000
COPIED = ("customer_id", "email", "subject", "message", "status", "created_at", "answered_at")


def copier(source, target):
    """A ``RunPython`` function copying every inquiry of model ``source`` into ``target``,
    which gives it a new key (a UUID forwards, the next integer backwards)."""

    def copy(apps, schema_editor):
        alias = schema_editor.connection.alias
        to = apps.get_model("shop", target)
        rows = apps.get_model("shop", source).objects.using(alias).order_by("created_at", "pk")
        batch = []
        for values in rows.values_list(*COPIED).iterator(chunk_size=BATCH):
            batch.append(to(**dict(zip(COPIED, values))))
            if len(batch) == BATCH:
                to.objects.using(alias).bulk_create(batch)
                batch = []
        to.objects.using(alias).bulk_create(batch)

    return copy


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="InquiryByUUID",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("email", models.EmailField(max_length=254)),
                ("subject", models.CharField(max_length=200)),
                ("message", models.TextField()),
                ("status", models.CharField(choices=[("open", "Open"), ("answered", "Answered"), ("closed", "Closed")], default="open", max_length=10)),
                ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("answered_at", models.DateTimeField(blank=True, null=True)),
                ("customer", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="shop.customeraccount")),
            ],
            options={"verbose_name_plural": "inquiries"},
        ),
        migrations.RunPython(
            copier("Inquiry", "InquiryByUUID"), copier("InquiryByUUID", "Inquiry"), elidable=True
        ),
        migrations.DeleteModel(name="Inquiry"),
        migrations.RenameModel(old_name="InquiryByUUID", new_name="Inquiry"),
        migrations.AlterField(
            model_name="inquiry",
            name="customer",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="inquiries", to="shop.customeraccount"),
        ),
    ]
