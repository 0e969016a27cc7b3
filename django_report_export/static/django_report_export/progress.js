/*
 * Live progress of report exports in the Django admin.
 *
 * Every element with data-rex-poll="<status URL>" (a progress bar) is kept up to date by
 * polling that URL, the service's status endpoint, while its export is Starting, Running or
 * Paused. The answer (the API's status body) updates every element of the same export
 * (data-rex-export="<id>"): data-rex-field="progress|status_name|rows|rate|eta|..." get new
 * text, data-rex-states="5" elements are shown only in those states (buttons, download link).
 * Texts are translated by Django's JavaScript catalog (the admin's jsi18n view of this app,
 * loaded before this file); without it they stay English. Plain JavaScript, no build step.
 */
(function () {
  "use strict";

  var ACTIVE = [1, 2, 3];
  var STATUS_CLASS = /\brex-(status|progress)-\d\b/g;
  var POLL_MS = {1: 1000, 2: 1000, 3: 3000};
  var RETRY_MS = 5000;

  var gettext = window.gettext || function (text) { return text; };
  var interpolate = window.interpolate || function (format, values, named) {
    return format.replace(/%\(\w+\)s/g, function (match) {
      return String(values[match.slice(2, -2)]);
    });
  };
  // The status labels of the admin (the API's status_name stays English).
  var STATUS_LABELS = {
    0: gettext("Ready"),
    1: gettext("Starting"),
    2: gettext("Running"),
    3: gettext("Paused"),
    4: gettext("Canceled"),
    5: gettext("Finished"),
    6: gettext("Error")
  };

  function formatNumber(value) {
    return Math.round(value).toLocaleString("en-US");
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
  }

  function formatSize(size) {
    if (size === null || size === undefined) {
      return "—";
    }
    var units = ["B", "KB", "MB", "GB"];
    var value = size;
    for (var i = 0; i < units.length; i++) {
      if (value < 1024 || i === units.length - 1) {
        return i === 0 ? value + " B" : value.toFixed(1) + " " + units[i];
      }
      value /= 1024;
    }
    return String(size);
  }

  function formatPercent(value) {
    return String(Math.round(value * 10) / 10);
  }

  function formatDate(value) {
    // "YYYY-MM-DD HH:MM:SS" in the shop's time zone (data-rex-tz), as the page renders it.
    if (!value) {
      return "—";
    }
    var zone = document.querySelector("[data-rex-tz]");
    var options = {hour12: false};
    if (zone) {
      options.timeZone = zone.getAttribute("data-rex-tz");
    }
    try {
      return new Date(value).toLocaleString("sv-SE", options);
    } catch (error) {
      return new Date(value).toLocaleString("sv-SE", {hour12: false});
    }
  }

  function texts(body) {
    var rows = formatNumber(body.processed);
    if (body.total !== null && body.total !== undefined) {
      rows += " / " + formatNumber(body.total);
    }
    return {
      status_name: STATUS_LABELS[body.status] || body.status_name,
      rows: rows,
      rate: body.rows_per_second
        ? interpolate(gettext("%(rate)s rows/s"), {rate: formatNumber(body.rows_per_second)}, true)
        : "—",
      eta: body.eta_seconds !== null && body.eta_seconds !== undefined
        ? formatDuration(body.eta_seconds) : "—",
      started_at: formatDate(body.started_at),
      finished_at: formatDate(body.finished_at),
      file_size: formatSize(body.file_size),
      error: body.error || ""
    };
  }

  function elementsOf(exportId) {
    return document.querySelectorAll('[data-rex-export="' + exportId + '"]');
  }

  function setStatusClass(el, prefix, status) {
    el.className = el.className.replace(STATUS_CLASS, "").trim() + " rex-" + prefix + "-" + status;
  }

  function update(exportId, body) {
    var values = texts(body);
    elementsOf(exportId).forEach(function (el) {
      var field = el.getAttribute("data-rex-field");
      var states = el.getAttribute("data-rex-states");
      if (states !== null) {
        el.hidden = states.split(",").indexOf(String(body.status)) === -1;
      }
      if (field === "progress") {
        var percent = formatPercent(body.progress);
        el.setAttribute("aria-valuenow", percent);
        el.setAttribute("data-rex-status", body.status);
        var fill = el.querySelector(".rex-progress-fill");
        if (fill) {
          fill.style.width = percent + "%";
          setStatusClass(fill, "progress", body.status);
        }
        var label = el.querySelector(".rex-progress-label");
        if (label) {
          label.textContent = percent + "%";
        }
      } else if (field === "error") {
        el.textContent = values.error;
        el.title = values.error;
        if (el.hasAttribute("data-rex-hide-empty")) {
          el.hidden = !values.error;
        }
        if (el.hasAttribute("data-rex-errornote")) {
          el.classList.toggle("errornote", body.status === 6);
        }
      } else if (field && Object.prototype.hasOwnProperty.call(values, field)) {
        el.textContent = values[field];
        if (field === "status_name") {
          setStatusClass(el, "status", body.status);
        }
      }
    });
  }

  function notice(exportId, text) {
    elementsOf(exportId).forEach(function (el) {
      if (el.getAttribute("data-rex-field") === "notice") {
        el.textContent = text;
        el.hidden = !text;
      }
    });
  }

  function watch(bar) {
    var url = bar.getAttribute("data-rex-poll");
    var exportId = bar.getAttribute("data-rex-export");

    function schedule(delay) {
      window.setTimeout(poll, delay);
    }

    function poll() {
      fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (body) {
          if (body.id !== exportId) {
            // A newer export took the slot: this one was canceled by that start.
            notice(exportId, gettext(
              "A newer export replaced this one; reload the page to see its final state."));
            return;
          }
          notice(exportId, "");
          update(exportId, body);
          if (ACTIVE.indexOf(body.status) !== -1) {
            schedule(POLL_MS[body.status]);
          }
        })
        .catch(function (error) {
          notice(exportId, interpolate(
            gettext("The status could not be read (%(error)s); retrying."),
            {error: error.message}, true));
          schedule(RETRY_MS);
        });
    }

    poll();
  }

  function confirmForms() {
    document.querySelectorAll("form[data-rex-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-rex-confirm"))) {
          event.preventDefault();
        }
      });
    });
  }

  function init() {
    document.querySelectorAll("[data-rex-poll]").forEach(watch);
    confirmForms();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
