// Line charts drawn as SVG through DOM calls (no HTML, no library): a time axis of
// minutes, a value axis from 0 with round ticks, one polyline per series. Colours come
// from the stylesheet (classes), since the page's policy allows no inline style.

const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 200, LEFT = 48, RIGHT = 10, TOP = 10, BOTTOM = 26;

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// 1, 2 or 5 times a power of ten, so that about four ticks cover `max`.
export function niceStep(max) {
  if (!(max > 0)) return 1;
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function label(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 1 : 0);
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// xs: the minutes (ms since the epoch) of the slots; series: [{name, cls, values}] with
// one value per slot (null: nothing to draw there). Returns an <svg> with a title.
export function lineChart(title, xs, series) {
  const values = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
  const step = niceStep(Math.max(0, ...values));
  const top = Math.max(step, Math.ceil(Math.max(0, ...values) / step) * step);
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  const x = (i) => LEFT + (xs.length > 1 ? (i * plotW) / (xs.length - 1) : plotW / 2);
  const y = (v) => TOP + plotH - (v / top) * plotH;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title },
    s("title", {}, title));
  for (let v = 0; v <= top + step / 2; v += step) {
    svg.append(s("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }),
      s("text", { class: "tick", x: LEFT - 4, y: y(v) + 4, "text-anchor": "end" }, label(v)));
  }
  const every = Math.max(1, Math.ceil(xs.length / 6));
  xs.forEach((ms, i) => {
    if ((xs.length - 1 - i) % every === 0) {
      const anchor = i === xs.length - 1 ? "end" : "middle";
      svg.append(s("text", { class: "tick", x: x(i), y: H - 8, "text-anchor": anchor }, clock(ms)));
    }
  });
  for (const one of series) {
    // Gaps (null) split the line; a lone point is drawn as a dot.
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        const [px, py] = run[0].split(",");
        svg.append(s("circle", { class: "line " + one.cls, cx: px, cy: py, r: 3.5 }));
      } else if (run.length > 1) {
        svg.append(s("polyline", { class: "line " + one.cls, points: run.join(" ") }));
      }
      run = [];
    };
    one.values.forEach((v, i) => {
      if (v === null || v === undefined) flush();
      else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }
  return svg;
}

export function legend(series) {
  const el = document.createElement("ul");
  el.className = "legend";
  for (const one of series) {
    const li = document.createElement("li");
    const key = document.createElement("span");
    key.className = "key " + one.cls;
    key.setAttribute("aria-hidden", "true");
    li.append(key, document.createTextNode(one.name));
    el.append(li);
  }
  return el;
}
