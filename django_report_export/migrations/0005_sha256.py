from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_report_export", "0004_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="reportexport",
            name="sha256",
            field=models.CharField(blank=True, default="", max_length=64, verbose_name="SHA-256"),
        ),
    ]
