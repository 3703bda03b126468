// Tags and comments on activity entries: each row's last cell shows the entry's tags and
// how many comments it has, with a button that opens the annotate dialog (operators and
// admins; a viewer gets the gateway's 403 as a toast). The dialog lists what others wrote.

import { apiJson } from "./api.js";
import { $, fill, h } from "./dom.js";
import { utc } from "./format.js";
import { toast } from "./ui.js";

const TAG = /^[a-z0-9][a-z0-9_.:-]{0,31}$/;

/** The notes cell of one activity row (replaced in place after an annotation). */
export function notesCell(event) {
  const tags = (event.tags || []).map((tag) => h("span", { class: "tag" }, tag));
  const comments = (event.annotations || []).filter((n) => n.comment);
  const count = comments.length
    ? h(
        "span",
        { class: "note-count", title: comments.map((n) => `${n.actor}: ${n.comment}`).join("\n") },
        `${comments.length} comment${comments.length === 1 ? "" : "s"}`,
      )
    : null;
  const button = h(
    "button",
    { type: "button", class: ["btn", "btn-small", "btn-quiet", "annotate"], "aria-label": `Tag or comment entry ${event.seq}` },
    "Tag",
  );
  const cell = h("td", { class: "notes" }, tags, count, button);
  button.addEventListener("click", () => annotate(event, cell));
  return cell;
}

function parseTags(text) {
  return text
    .split(/[\s,]+/)
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
}

async function annotate(event, cell) {
  const dialog = $("#annotate");
  $("#annotate-entry").textContent = `#${event.seq} · ${event.system} · ${event.action} — ${event.detail}`;
  const tagsInput = $("#annotate-tags");
  const comment = $("#annotate-comment");
  const errors = $("#annotate-error");
  tagsInput.value = "";
  comment.value = "";
  errors.hidden = true;
  fill(
    $("#annotate-history"),
    (event.annotations || []).map((n) =>
      h(
        "li",
        {},
        h("time", { datetime: n.time, title: utc(n.time) }, utc(n.time)),
        ` ${n.actor}`,
        n.tags.length ? ` [${n.tags.join(", ")}]` : "",
        n.comment ? `: ${n.comment}` : "",
      ),
    ),
  );
  dialog.returnValue = "cancel";
  dialog.showModal();
  tagsInput.focus();
  const answer = await new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true }));
  if (answer !== "save") return;
  const tags = parseTags(tagsInput.value);
  const bad = tags.filter((t) => !TAG.test(t));
  if (bad.length) {
    toast(`Not a tag: ${bad.join(", ")} (1-32 of a-z 0-9 _ . : -)`, "error", "Annotation not saved");
    return;
  }
  if (!tags.length && !comment.value.trim()) return;
  try {
    const reply = await apiJson(`/api/v1/admin/activity-log/${encodeURIComponent(event.id)}/annotations`, {
      method: "POST",
      json: { tags, comment: comment.value.trim() },
    });
    Object.assign(event, { tags: reply.entry.tags, annotations: reply.entry.annotations });
    cell.replaceWith(notesCell(event));
    toast(`Entry #${event.seq} annotated`, "ok");
  } catch (error) {
    toast(error.message, "error", "Annotation not saved");
  }
}
