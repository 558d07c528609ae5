"use strict";
const $ = (id) => document.getElementById(id);
let state = null;    // the server's view: item, status, answered, total, can_undo
let groups = [];     // the ordering so far, best first: lists of tied completion indices
let tieNext = false;
let busy = false;
let poll = null;

const nameField = $("labeler");
nameField.value = localStorage.getItem("textgym.labeler") || "";
const labeler = () => nameField.value.trim() || "anonymous";

function note(text, error) {
  const box = $("message");
  box.textContent = text || "";
  box.className = error ? "error" : "";
}

async function call(path, body) {
  if (busy) return;
  busy = true;
  try {
    const response = body === undefined
      ? await fetch(path + "?labeler=" + encodeURIComponent(labeler()))
      : await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                           body: JSON.stringify({labeler: labeler(), ...body})});
    const reply = await response.json();
    if (reply.state) show(reply.state);
    if (reply.error) note(reply.error, response.status !== 409);
    return response.ok;
  } catch (err) {
    note("Cannot reach the labeling server (" + err.message + "); your last answer may not be saved.", true);
  } finally {
    busy = false;
  }
}

function show(next) {
  const before = state && state.item ? state.item.id : null;
  state = next;
  if (!state.item || state.item.id !== before) { groups = []; tieNext = false; }
  clearTimeout(poll);
  if (state.status === "wait") poll = setTimeout(() => call("/api/state"), 3000);
  render();
}

function ranks() {
  const out = [];
  let rank = 1;
  for (const group of groups) { for (const i of group) out[i] = rank; rank += group.length; }
  return out;
}

function ordinal(n) {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  return n + (teen ? "th" : {1: "st", 2: "nd", 3: "rd"}[n % 10] || "th");
}

function render() {
  const item = state.item, k = item ? item.completions.length : 0, rank = ranks();
  const picked = groups.flat().length;
  $("progress").textContent = state.answered + " / " + state.total + " answered";
  $("fill").style.width = (state.total ? 100 * state.answered / state.total : 100) + "%";
  $("work").hidden = !item;
  $("idle").hidden = !!item;
  $("undo").disabled = $("undo-idle").disabled = !state.can_undo;
  if (!item) {
    const done = state.status === "done";
    $("idle-title").textContent = done ? "All prompts are answered. Thank you!" : "Nothing for you right now";
    $("idle-text").textContent = done ? "Every answer is saved; you can close this page."
      : "The prompts left are with other labelers; this page checks again every few seconds.";
    return;
  }
  $("item-id").textContent = "#" + item.id;
  $("prompt").textContent = item.prompt;
  const list = $("completions");
  if (list.dataset.item !== String(item.id)) {
    list.replaceChildren(...item.completions.map((text, i) => {
      const card = document.createElement("button");
      card.className = "completion";
      card.dataset.index = i;
      card.innerHTML = '<span class="key"></span><span class="text"></span><span class="rank"></span>';
      card.querySelector(".key").textContent = i + 1;
      card.querySelector(".text").textContent = text;
      card.addEventListener("click", () => { pick(i); card.blur(); });
      return card;
    }));
    list.dataset.item = item.id;
  }
  list.querySelectorAll(".completion").forEach((card, i) => {
    const tied = groups.some((g) => g.length > 1 && g.includes(i));
    card.classList.toggle("ranked", rank[i] !== undefined);
    card.classList.toggle("best", rank[i] === 1);
    card.querySelector(".rank").textContent = rank[i] === undefined ? "" : (tied ? "tied " : "") + ordinal(rank[i]);
  });
  $("tie").disabled = picked === 0 || picked === k;
  $("tie").setAttribute("aria-pressed", String(tieNext));
  $("clear").disabled = picked === 0;
  $("submit").disabled = picked !== k;
  $("order").innerHTML = picked === 0 ? "Click the best completion first." : "Your order: <b></b>" +
    (picked === k ? " — press Enter to submit." : tieNext ? " — the next pick ties with the last." : "");
  if (picked) $("order").querySelector("b").textContent =
    groups.map((g) => g.map((i) => i + 1).join(" = ")).join("  ›  ");
}

function pick(i) {
  if (!state || !state.item || busy || i >= state.item.completions.length) return;
  const at = groups.findIndex((g) => g.includes(i));
  if (at >= 0) {
    groups[at] = groups[at].filter((j) => j !== i);
    groups = groups.filter((g) => g.length);
  } else if (tieNext && groups.length) {
    groups[groups.length - 1].push(i);
  } else {
    groups.push([i]);
  }
  tieNext = false;
  render();
}

function toggleTie() {
  if (!state || !state.item || $("tie").disabled) return;
  tieNext = !tieNext;
  render();
}

function clearOrder() { groups = []; tieNext = false; if (state && state.item) render(); }

async function submit() {
  if (!state || !state.item || $("submit").disabled) return;
  if (await call("/api/answer", {id: state.item.id, ranking: ranks()})) note("Saved.");
}

async function skip() {
  if (state && state.item && await call("/api/skip", {id: state.item.id})) note("Skipped.");
}

async function undo() {
  if (state && state.can_undo && await call("/api/undo", {})) note("Undone: here it is again.");
}

$("tie").addEventListener("click", toggleTie);
$("clear").addEventListener("click", clearOrder);
$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("undo").addEventListener("click", undo);
$("undo-idle").addEventListener("click", undo);
let named = labeler();
nameField.addEventListener("change", async () => {
  localStorage.setItem("textgym.labeler", nameField.value.trim());
  note("");
  const before = named;
  named = labeler();
  if (before === named) return;
  await fetch("/api/release", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify({labeler: before})});
  call("/api/state");
});

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target === nameField) { if (event.key === "Enter") nameField.blur(); return; }
  const keys = {"=": toggleTie, "Backspace": clearOrder, "Enter": submit, "s": skip, "u": undo};
  if (/^[1-9]$/.test(event.key)) pick(Number(event.key) - 1);
  else if (keys[event.key]) keys[event.key]();
  else return;
  event.preventDefault();
});

call("/api/state");
setInterval(() => { if (state && state.item && !busy) call("/api/state"); }, 60000);  // keeps this item ours
