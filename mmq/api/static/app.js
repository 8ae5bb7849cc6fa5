"use strict";
// The mmq search page: plain JavaScript over the HTTP API (/v1). No framework, no build
// step, nothing fetched from elsewhere. The key lives in sessionStorage (this tab only).

const KEY_STORE = "mmq.key";
const POLL_MS = 400;
const RESULTS = 24;
const $ = (id) => document.getElementById(id);
const page = { image: null, hits: new Map(), hit: null, opener: null };

// ---------------------------------------------------------------- the API

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function storedKey() {
  return sessionStorage.getItem(KEY_STORE);
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${storedKey()}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  return answer(response.status, await response.text());
}

// The body's JSON, or an ApiFailure carrying the API's own message. A 401 means the key
// is unknown or revoked: it is dropped and the prompt comes back.
function answer(status, text) {
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (status === 401) forgetKey();
  if (status >= 400 || status === 0) {
    throw new ApiFailure(status, body?.error?.message || `the server answered ${status}`);
  }
  return body;
}

async function poll(statusUrl, onProgress) {
  for (;;) {
    const job = await api(statusUrl);
    if (onProgress) onProgress(job);
    if (job.state === "done") return job;
    if (job.state === "failed") throw new ApiFailure(500, job.error?.message || "the job failed");
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

// ---------------------------------------------------------------- small helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function report(err) {
  say(`Error: ${err.message || err}`, true);
}

const seconds = (s) => `${Number(s).toFixed(1)} s`;

function hitName(hit) {
  return hit.external_id || hit.metadata?.filename || `item ${hit.item_id}`;
}

// ---------------------------------------------------------------- the key

function showPrompt() {
  $("app").hidden = true;
  $("who").hidden = true;
  $("forget").hidden = true;
  $("key-form").hidden = false;
  $("key-input").focus();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  $("results").replaceChildren();
  $("upload-slot").replaceChildren();
  showPrompt();
}

function onKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  $("key-input").value = "";
  start();
}

async function start() {
  if (!storedKey()) return showPrompt();
  $("key-form").hidden = true;
  say("Loading your collections…");
  try {
    const [me, listing] = await Promise.all([api("/v1/key"), api("/v1/collections")]);
    showKey(me);
    fillCollections(listing.collections, me.collections);
    setUpload(me.role === "write" || me.role === "admin");
    $("app").hidden = false;
    say(`Ready: ${me.role} key ${me.prefix}.`);
    $("q").focus();
  } catch (err) {
    report(err);
  }
}

function showKey(me) {
  $("who").textContent = `Key ${me.prefix} (${me.role})`;
  $("who").hidden = false;
  $("forget").hidden = false;
}

// ---------------------------------------------------------------- collections

function countsText(counts) {
  const parts = Object.entries(counts || {}).map(([kind, n]) => `${n} ${kind}`);
  return parts.length ? parts.join(", ") : "empty";
}

// The collections that exist, with their counts, then those the key may fill but that
// hold nothing yet (an upload creates them).
function fillCollections(found, scoped) {
  const select = $("collection");
  const chosen = select.value;
  const names = new Set(found.map((c) => c.name));
  const options = found.map((c) => el("option", { value: c.name, textContent: `${c.name} (${countsText(c.counts)})` }));
  for (const name of scoped.filter((n) => !names.has(n))) {
    options.push(el("option", { value: name, textContent: `${name} (empty)` }));
  }
  select.replaceChildren(...options);
  if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

async function refreshCollections() {
  const [me, listing] = await Promise.all([api("/v1/key"), api("/v1/collections")]);
  fillCollections(listing.collections, me.collections);
}

// ---------------------------------------------------------------- search

function searchUrl() {
  return `/v1/collections/${encodeURIComponent($("collection").value)}/search`;
}

// Fields shared by every search: the filter, the cut-off, and every segment of a video
// (the player lists a video's other matching segments).
function commonFields() {
  const fields = { k: RESULTS, segments: "all" };
  const filter = $("filter").value.trim();
  if (filter) {
    let parsed;
    try {
      parsed = JSON.parse(filter);
    } catch {
      throw new Error("the metadata filter is not JSON");
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new Error('the metadata filter must be a JSON object, e.g. {"source": "camera"}');
    }
    fields.filter = parsed;
  }
  const minScore = $("min-score").value.trim();
  if (minScore) fields.min_score = Number(minScore);
  return fields;
}

// A query from the form: text, image, or both (weighted by the slider).
function formQuery() {
  const text = $("q").value.trim();
  if (!text && !page.image) throw new Error("type some words or pick an image to search");
  const query = commonFields();
  if (text) query.text = text;
  if (text && page.image) {
    const w = Number($("weight").value);
    query.weights = { image: w, text: Number((1 - w).toFixed(2)) };
  }
  return query;
}

// JSON, or multipart when there is an image (JSON values as JSON text fields).
function searchRequest(query) {
  if (!page.image) {
    return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(query) };
  }
  const form = new FormData();
  form.append("image", page.image, page.image.name || "image");
  for (const [field, value] of Object.entries(query)) {
    form.append(field, typeof value === "string" ? value : JSON.stringify(value));
  }
  return { method: "POST", body: form };
}

async function runSearch(makeRequest) {
  if (!$("collection").value) return say("This key sees no collection.", true);
  let request;
  try {
    request = makeRequest();
  } catch (err) {
    return report(err);
  }
  say("Searching…");
  try {
    let result = await api(searchUrl(), request);
    if (result.job_id) result = await poll(result.status_url);
    showHits(result.hits);
    say(result.hits.length ? `${result.hits.length} results.` : "No results.");
  } catch (err) {
    report(err);
  }
}

function search() {
  return runSearch(() => searchRequest(formQuery()));
}

// Examples by item id: the collection's items nearest to this one (itself left out).
function moreLike(hit) {
  return runSearch(() => {
    const query = { ...commonFields(), like: [hit.item_id] };
    return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(query) };
  });
}

// ---------------------------------------------------------------- the image query

function useImage(file) {
  page.image = file;
  $("image-name").textContent = file ? `Image: ${file.name || "dropped image"}` : "or drop an image anywhere on the page";
  $("clear-image").hidden = !file;
  if (!file) $("image-input").value = "";
}

function onImagePicked() {
  const file = $("image-input").files[0];
  if (!file) return;
  useImage(file);
  search();
}

function draggingFiles(event) {
  return [...(event.dataTransfer?.types || [])].includes("Files");
}

// A drop anywhere searches by the image; a drop onto a file input keeps its own meaning.
function watchDrops() {
  document.addEventListener("dragover", (event) => {
    if (!draggingFiles(event) || event.target.type === "file") return;
    event.preventDefault();
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) document.body.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    document.body.classList.remove("dragging");
    if (event.target.type === "file" || !draggingFiles(event)) return;
    event.preventDefault();
    if ($("app").hidden) return;
    const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
    if (!file) return say("Drop an image to search by it.", true);
    useImage(file);
    search();
  });
}

// ---------------------------------------------------------------- results

function showHits(hits) {
  page.hits = new Map(hits.map((h) => [h.item_id, h]));
  $("results").replaceChildren(...hits.map(card));
}

function preview(hit) {
  const image = hit.thumbnail_url ? el("img", { src: hit.thumbnail_url, alt: "", loading: "lazy" }) : null;
  if (hit.kind === "video") {
    const label = `Play ${hitName(hit)} from ${seconds(hit.start_s)}`;
    const play = el("button", { type: "button", className: "preview", ariaLabel: label }, image, el("span", { className: "badge", textContent: "▶" }));
    play.addEventListener("click", () => openPlayer(hit, play));
    return play;
  }
  if (hit.media_url) {
    return el("a", { href: hit.media_url, target: "_blank", rel: "noopener", className: "preview", ariaLabel: `Open ${hitName(hit)}` }, image);
  }
  return el("blockquote", { className: "preview text", textContent: hit.source || "" });
}

function card(hit) {
  const score = hit.score.toFixed(3);
  const when = hit.kind === "video" ? ` · ${seconds(hit.start_s)}–${seconds(hit.end_s)}` : "";
  const data = { itemId: hit.item_id, kind: hit.kind, score, name: hitName(hit) };
  if (hit.kind === "video") Object.assign(data, { startS: hit.start_s, endS: hit.end_s });
  const more = el("button", { type: "button", className: "more", textContent: "More like this" });
  more.addEventListener("click", () => moreLike(hit));
  const item = el(
    "li",
    { className: "card", tabIndex: 0, dataset: data, ariaLabel: `${hitName(hit)}, ${hit.kind}, score ${score}` },
    preview(hit),
    el("h3", { className: "name", textContent: hitName(hit) }),
    el("p", { className: "facts" }, el("span", { className: "score", textContent: score }), ` · ${hit.kind}${when}`),
    more,
  );
  // Enter on the card itself opens it, as a click on its picture does.
  item.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target === item) item.querySelector(".preview")?.click();
  });
  return item;
}

// ---------------------------------------------------------------- the video player

function duration() {
  const d = page.hit?.duration_s || $("video").duration;
  return Number.isFinite(d) && d > 0 ? d : null;
}

const percent = (s) => `${Math.min(100, Math.max(0, (100 * s) / duration()))}%`;

function markSegment(start, end) {
  $("segment-text").textContent = `Segment ${seconds(start)}–${seconds(end)}` + (duration() ? ` of ${seconds(duration())}` : "");
  const mark = $("mark");
  mark.hidden = !duration();
  if (duration()) {
    mark.style.left = percent(start);
    mark.style.width = `calc(${percent(end)} - ${percent(start)})`;
  }
  for (const button of $("segments").querySelectorAll("button")) {
    button.ariaCurrent = Number(button.dataset.startS) === start ? "true" : null;
  }
}

function seek(start, end) {
  $("video").currentTime = start;
  markSegment(start, end);
}

function listSegments(hit) {
  const segments = (hit.segments?.length ? hit.segments : [hit]).slice().sort((a, b) => a.start_s - b.start_s);
  $("segments").replaceChildren(
    ...segments.map((s) => {
      const text = `${seconds(s.start_s)}–${seconds(s.end_s)} · score ${s.score.toFixed(3)}`;
      const button = el("button", { type: "button", textContent: text, dataset: { startS: s.start_s, endS: s.end_s } });
      button.addEventListener("click", () => seek(s.start_s, s.end_s));
      return el("li", {}, button);
    }),
  );
}

function openPlayer(hit, opener) {
  page.hit = hit;
  page.opener = opener;
  const video = $("video");
  $("player-title").textContent = hitName(hit);
  listSegments(hit);
  // The fragment starts the download at the moment; the seek after the metadata makes sure.
  video.addEventListener("loadedmetadata", () => seek(hit.start_s, hit.end_s), { once: true });
  video.src = `${hit.media_url}#t=${hit.start_s}`;
  markSegment(hit.start_s, hit.end_s);
  $("player").showModal();
  video.focus();
}

function onPlayerClosed() {
  const video = $("video");
  video.pause();
  video.removeAttribute("src");
  video.load();
  page.hit = null;
  page.opener?.focus();
}

function onTime() {
  if (duration()) $("playhead").style.left = percent($("video").currentTime);
}

// ---------------------------------------------------------------- uploads

function setUpload(canWrite) {
  $("upload-slot").replaceChildren();
  if (!canWrite) return;
  $("upload-slot").append($("upload-template").content.cloneNode(true));
  $("upload-form").addEventListener("submit", onUpload);
}

function setProgress(phase, fraction) {
  const bar = $("upload-progress");
  if (!bar) return;
  bar.hidden = false;
  bar.value = fraction;
  $("upload-phase").hidden = false;
  $("upload-phase").textContent = `${phase}: ${Math.round(100 * fraction)}%`;
}

// XMLHttpRequest, not fetch: only it reports how much of the body has been sent.
function sendFiles(url, form) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Authorization", `Bearer ${storedKey()}`);
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && setProgress("Uploading", e.loaded / e.total));
    xhr.addEventListener("load", () => {
      try {
        resolve(answer(xhr.status, xhr.responseText));
      } catch (err) {
        reject(err);
      }
    });
    xhr.addEventListener("error", () => reject(new ApiFailure(0, "the upload did not reach the server")));
    xhr.send(form);
  });
}

function showOutcomes(files, items) {
  $("upload-outcomes")?.replaceChildren(
    ...items.map((item, i) => {
      const name = files[i]?.name || item.external_id || item.source;
      const text = item.status === "failed" ? `failed: ${item.error}` : item.status;
      return el("li", { className: `outcome ${item.status}`, dataset: { status: item.status } }, `${name}: `, el("strong", { textContent: text }));
    }),
  );
}

async function onUpload(event) {
  event.preventDefault();
  const files = [...$("upload-input").files];
  if (!files.length) return say("Choose files to upload.", true);
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  const collection = $("collection").value;
  $("upload-outcomes").replaceChildren();
  setProgress("Uploading", 0);
  say(`Uploading ${files.length} file(s) to ${collection}…`);
  try {
    const job = await sendFiles(`/v1/collections/${encodeURIComponent(collection)}/items`, form);
    say("Uploaded: the workers are adding the files…");
    const done = await poll(job.status_url, ({ progress }) => progress?.total && setProgress("Ingesting", progress.done / progress.total));
    setProgress("Done", 1);
    showOutcomes(files, done.items);
    say(`${done.stored} stored, ${done.failed} failed.`, done.failed > 0);
    $("upload-input").value = "";
    await refreshCollections();
  } catch (err) {
    report(err);
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("key-form").addEventListener("submit", onKey);
  $("forget").addEventListener("click", () => {
    forgetKey();
    say("The key is forgotten.");
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("collection").addEventListener("change", () => $("results").replaceChildren());
  $("image-input").addEventListener("change", onImagePicked);
  $("clear-image").addEventListener("click", () => {
    useImage(null);
    $("q").focus();
  });
  $("weight").addEventListener("input", () => {
    const w = Number($("weight").value);
    $("weight-out").textContent = `image ${w.toFixed(2)} · text ${(1 - w).toFixed(2)}`;
  });
  $("close-player").addEventListener("click", () => $("player").close());
  $("player").addEventListener("close", onPlayerClosed);
  $("video").addEventListener("timeupdate", onTime);
  $("video").addEventListener("seeked", onTime);
  watchDrops();
}

wire();
start();
