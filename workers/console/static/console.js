// flowfleet console: local times beside the UTC ones, and a running replay's page that follows it.
"use strict";

function addLocalTimes(root) {
  for (const node of root.querySelectorAll("time[datetime]")) {
    if (node.dataset.local) continue;
    const moment = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    const local = document.createElement("span");
    local.className = "local-time";
    local.textContent = "(" + moment.toLocaleString() + " local)";
    node.after(local);
    node.dataset.local = "1";
  }
}

function showCounts(table, counts) {
  const body = document.createElement("tbody");
  for (const [name, value] of Object.entries(counts || {})) {
    const row = body.insertRow();
    const label = document.createElement("th");
    label.scope = "row";
    label.textContent = name;
    row.append(label);
    row.insertCell().textContent = String(value);
  }
  table.replaceChildren(body);
}

function followAction(progress) {
  const id = progress.dataset.action;
  const poll = async () => {
    const answer = await fetch("/actions/" + id + ".json", { credentials: "same-origin", cache: "no-store" });
    if (!answer.ok) return;
    const state = await answer.json();
    document.getElementById("status").textContent = state.status;
    showCounts(document.getElementById("counts"), state.counts);
    if (state.status === "running") {
      setTimeout(poll, 1000);
    } else {
      window.location.reload();
    }
  };
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  addLocalTimes(document);
  const progress = document.getElementById("progress");
  if (progress && progress.dataset.status === "running") followAction(progress);
});
