// The slide viewer page: the slide list, one slide as Deep Zoom tiles in OpenSeadragon, the
// probability map as an overlay (toggle + opacity), lesion outlines with diameters, a scale bar
// in mm. Everything comes from this server (/api, /slides, /static): it works offline.
// window.metastasisViewer exposes the state (tests and benchmarks read it).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    viewer: null, slide: null, slideItem: null, overlay: null,
    levels: [], firstTileMs: null, fullyLoadedMs: null, openedMs: null, lesionsDrawn: 0,
    lesionsLoaded: false,
  };
  window.metastasisViewer = state;

  async function getJSON(url) {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function showWarning(text) {
    const el = $("warning");
    el.textContent = text || "";
    el.hidden = !text;
  }

  function listSlides(folder, slides) {
    $("folder").textContent = folder;
    const list = $("slides");
    list.replaceChildren();
    for (const s of slides) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.slide = s.name;
      button.disabled = !s.viewable;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = s.name;
      const cat = document.createElement("span");
      cat.className = "cat " + (s.category || s.status || "");
      cat.textContent = s.category || s.status;
      button.append(name, cat);
      button.title = s.viewable
        ? `${s.lesions ?? 0} lesions; largest ${fmtMm(s.largest_diameter_mm)}`
        : `${s.status}: nothing to show`;
      button.addEventListener("click", () => { location.hash = "slide=" + encodeURIComponent(s.name); });
      li.append(button);
      list.append(li);
    }
  }

  function fmtMm(v) {
    return v === null || v === undefined ? "none" : `${Number(v).toFixed(2)} mm`;
  }

  function makeViewer() {
    const viewer = OpenSeadragon({
      element: $("viewer"),
      prefixUrl: "/static/openseadragon/images/",
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "TOP_RIGHT",
      // the page's own zoom buttons: OpenSeadragon's would fetch 20 images that queue with
      // the slide list and the first tiles (a browser opens 6 connections per server)
      showNavigationControl: false,
      maxZoomPixelRatio: 2,
      visibilityRatio: 0.5,
      imageLoaderLimit: 6,
      timeout: 60000,
      animationTime: 0.5,
      gestureSettingsMouse: { clickToZoom: false },
    });
    viewer.addHandler("tile-loaded", (e) => {
      if (e.tiledImage !== state.slideItem) return;
      state.levels.push(e.tile.level);
      if (state.firstTileMs === null) state.firstTileMs = performance.now();
    });
    viewer.addHandler("update-viewport", draw);
    viewer.addHandler("resize", draw);
    return viewer;
  }

  async function openSlide(name, described) {
    const started = performance.now();
    let info = described;
    try {
      if (!info || info.name !== name) info = await getJSON("/api/slides/" + encodeURIComponent(name));
    } catch (err) {
      showWarning(String(err.message || err));
      return;
    }
    Object.assign(state, {
      slide: info, slideItem: null, overlay: null, levels: [], firstTileMs: null,
      fullyLoadedMs: null, openedMs: started, lesionsDrawn: 0, lesionsLoaded: false,
    });
    for (const b of document.querySelectorAll("#slides button")) {
      b.setAttribute("aria-current", String(b.dataset.slide === name));
    }
    $("slide-name").textContent = info.name;
    $("slide-info").textContent =
      `${info.category || "?"}; ${info.lesions ?? 0} lesions, largest ${fmtMm(info.largest_diameter_mm)}; ` +
      `${info.width} x ${info.height} px at ${info.mpp ? info.mpp.toFixed(3) : "?"} um/px`;
    showWarning(info.model_warning || "");
    info.lesions_drawn = [];
    const base = info.dzi.replace(/slide\.dzi$/, "slide_files/");
    const tileSource = {  // the .dzi's content, inlined: one request less before the first tiles
      Image: {
        xmlns: "http://schemas.microsoft.com/deepzoom/2008",
        Url: base, Format: "jpeg", Overlap: "1", TileSize: "254",
        Size: { Width: String(info.width), Height: String(info.height) },
      },
    };
    state.viewer.open(tileSource);
    try {  // after the tiles are asked for: thousands of outlines must not delay them
      const found = await getJSON(info.lesions_url);
      if (state.slide !== info) return;
      info.lesions_drawn = found.lesions;
      if (found.truncated) showWarning("only the largest lesions are drawn");
      state.lesionsLoaded = true;
      draw();
    } catch (err) {
      showWarning(String(err.message || err));
    }
  }

  function onOpen() {
    const viewer = state.viewer;
    const item = viewer.world.getItemAt(0);
    state.slideItem = item;
    item.addHandler("fully-loaded-change", (e) => {
      if (e.fullyLoaded && state.fullyLoadedMs === null) state.fullyLoadedMs = performance.now();
    });
    const info = state.slide;
    if (info.overlay) {
      const w = info.width;
      viewer.addSimpleImage({
        url: info.overlay.url,
        x: info.overlay.x / w, y: info.overlay.y / w, width: info.overlay.width / w,
        opacity: overlayOpacity(),
        success: (e) => { state.overlay = e.item; },
      });
    }
    draw();
  }

  function overlayOpacity() {
    return $("show-overlay").checked ? Number($("opacity").value) / 100 : 0;
  }

  function updateOverlay() {
    if (state.overlay) state.overlay.setOpacity(overlayOpacity());
  }

  function draw() {
    const canvas = $("marks");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const item = state.slideItem, info = state.slide;
    if (!item || !info) return;
    const p0 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
    const p1 = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(info.width, 0));
    const s = (p1.x - p0.x) / info.width;  // screen px per level-0 px
    scaleBar(s, info.mpp);
    state.lesionsDrawn = 0;
    if (!$("show-lesions").checked || !info.lesions_drawn.length) return;
    ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * p0.x, dpr * p0.y);
    ctx.lineWidth = 2 / s;
    ctx.strokeStyle = "#00e060";
    ctx.beginPath();
    for (const lesion of info.lesions_drawn) {
      for (const ring of lesion.rings) {
        ctx.moveTo(ring[0][0], ring[0][1]);
        for (let i = 1; i < ring.length; i++) ctx.lineTo(ring[i][0], ring[i][1]);
        ctx.closePath();
      }
    }
    ctx.stroke();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    let labels = 0;
    for (const lesion of info.lesions_drawn) {
      state.lesionsDrawn++;
      if (lesion.diameter_mm === null || labels >= 60) continue;
      let minX = Infinity, minY = Infinity, maxX = -Infinity;
      for (const [x, y] of lesion.rings[0]) { minX = Math.min(minX, x); minY = Math.min(minY, y); maxX = Math.max(maxX, x); }
      const sx = p0.x + minX * s, sy = p0.y + minY * s;
      if ((maxX - minX) * s < 6 || sx < -50 || sy < 0 || sx > w || sy > h + 20) continue;
      const text = fmtMm(lesion.diameter_mm);
      const tw = ctx.measureText(text).width;
      ctx.fillStyle = "rgba(0,0,0,0.65)";
      ctx.fillRect(sx, sy - 15, tw + 6, 15);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, sx + 3, sy - 1);
      labels++;
    }
  }

  function scaleBar(screenPerPx, mpp) {
    const bar = $("scalebar");
    if (!mpp || !(screenPerPx > 0)) { bar.hidden = true; return; }
    const umPerScreenPx = mpp / screenPerPx;
    const want = 150 * umPerScreenPx;  // about 150 px long
    const p = Math.pow(10, Math.floor(Math.log10(want)));
    const um = [5, 2, 1].map((k) => k * p).find((v) => v <= want) || p;
    bar.hidden = false;
    bar.querySelector(".bar").style.width = `${um / umPerScreenPx}px`;
    const mm = um / 1000;
    bar.querySelector(".label").textContent = mm >= 0.1 ? `${+mm.toPrecision(3)} mm` : `${+um.toPrecision(3)} µm`;
    bar.dataset.um = String(um);
  }

  function fromHash() {
    const m = /^#slide=(.*)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  async function main() {
    const listed = getJSON("/api/slides");  // first: nothing queues before it (preloaded)
    state.viewer = makeViewer();
    const vp = () => state.viewer.viewport;
    $("zoom-in").addEventListener("click", () => { vp().zoomBy(1.5); vp().applyConstraints(); });
    $("zoom-out").addEventListener("click", () => { vp().zoomBy(1 / 1.5); vp().applyConstraints(); });
    $("zoom-home").addEventListener("click", () => vp().goHome());
    state.viewer.addHandler("open", onOpen);
    $("show-overlay").addEventListener("change", updateOverlay);
    $("opacity").addEventListener("input", updateOverlay);
    $("show-lesions").addEventListener("change", draw);
    window.addEventListener("hashchange", () => { const n = fromHash(); if (n !== null) openSlide(n); });
    const listing = await listed;
    listSlides(listing.folder, listing.slides);
    const first = fromHash() ?? (listing.slides.find((s) => s.viewable) || {}).name;
    if (first !== undefined) await openSlide(first, listing.first);
    else showWarning("no slide of this folder can be shown");
  }

  main().catch((err) => showWarning(String(err.message || err)));
})();
