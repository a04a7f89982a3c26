// A Plotly figure that redraws in the browser while Streamlit sliders move (core.ui.live_figure).
//
// Python sends the figure (data.fig, Plotly JSON) and which Streamlit sliders drive it (data.watch:
// parameter name -> widget key). The component draws the figure with the plotly.js that ships with
// the Python plotly package (served from the app's static folder, so it works offline), and watches
// those sliders in the page: the moment a slider's value changes (keyboard or drag), an updater below
// recomputes the figure's data from the slider values, without waiting for the server. The server's
// rerun then sends the same figure, computed in Python, which replaces the local one.
//
// Each updater re-implements, in a few lines, the maths of the Python figure function it mirrors; a
// browser test checks the two agree (tests/test_page_kl.py).

const LN2PI = Math.log(2 * Math.PI);

function linspace(a, b, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = n === 1 ? a : a + (b - a) * i / (n - 1);
  return out;
}

// core.figures.kl.fmt: at most 3 decimals, no trailing zeros, no "-0".
function fmt(v) {
  let s = Number(v).toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
  return s === "-0" || s === "" ? "0" : s;
}

// core.figures.kl.grid_for: 160 even points over the span of every mean ± 4.5 sigma, plus 160 inside
// each curve's own span; sorted and unique.
function gridFor(mus, sigmas, width = 4.5, perCurve = 160, base = 160) {
  const lo = Math.min(...mus.map((m, i) => m - width * sigmas[i]));
  const hi = Math.max(...mus.map((m, i) => m + width * sigmas[i]));
  let xs = linspace(lo, hi, base);
  mus.forEach((m, i) => { xs = xs.concat(linspace(m - width * sigmas[i], m + width * sigmas[i], perCurve)); });
  xs.sort((a, b) => a - b);
  return xs.filter((v, i) => i === 0 || v !== xs[i - 1]);
}

const logpdf = (x, mu, s) => -0.5 * ((x - mu) / s) ** 2 - Math.log(s) - 0.5 * LN2PI;

// KL(p || q) = log(sigma_q / sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2
const klNormal = (mp, sp, mq, sq) => Math.log(sq / sp) + (sp * sp + (mp - mq) ** 2) / (2 * sq * sq) - 0.5;

const UPDATERS = {
  // core.figures.kl.density_figure. Traces: 0 p, 1 q, 2 positive part, 3 negative part, 4 integrand.
  kl_density(fig, v) {
    const { mu_p, sigma_p, mu_q, sigma_q } = v;
    if (!(sigma_p > 0 && sigma_q > 0)) return null;
    const x = gridFor([mu_p, mu_q], [sigma_p, sigma_q]);
    const p = x.map((t) => Math.exp(logpdf(t, mu_p, sigma_p)));
    const q = x.map((t) => Math.exp(logpdf(t, mu_q, sigma_q)));
    const f = x.map((t, i) => (p[i] === 0 ? 0 : p[i] * (logpdf(t, mu_p, sigma_p) - logpdf(t, mu_q, sigma_q))));
    const ys = [p, q, f.map((t) => Math.max(t, 0)), f.map((t) => Math.min(t, 0)), f];
    const data = fig.data.map((tr, i) => (i < 5 ? { ...tr, x, y: ys[i] } : tr));
    data[0].name = `p = N(${fmt(mu_p)}, ${fmt(sigma_p)}²)`;
    data[1].name = `q = N(${fmt(mu_q)}, ${fmt(sigma_q)}²)`;
    const kl = klNormal(mu_p, sigma_p, mu_q, sigma_q);
    const annotations = (fig.layout.annotations || []).map((a) =>
      a.text && a.text.includes("signed area is KL") ? { ...a, text: a.text.replace(/= -?[\d.]+ nats/, `= ${kl.toFixed(4)} nats`) } : a);
    return { data, layout: { ...fig.layout, annotations } };
  },

  // core.figures.kl.vae_kl_map: moves the point (the last trace) and its label
  // KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (mu^2 + sigma^2 - 1 - log sigma^2). The contours stay; a point
  // outside the drawn ranges (which Python widens around it) waits for the server.
  kl_vae_point(fig, v) {
    const { mu, logvar } = v;
    const [xr, yr] = [fig.layout.xaxis.range, fig.layout.yaxis.range];
    if (!(xr && yr && mu >= xr[0] + 0.5 && mu <= xr[1] - 0.5 && logvar >= yr[0] + 0.5 && logvar <= yr[1] - 0.5)) return null;
    const kl = 0.5 * (mu * mu + Math.exp(logvar) - 1 - logvar);
    const data = fig.data.slice();
    data[data.length - 1] = { ...data[data.length - 1], x: [mu], y: [logvar], text: [`  KL = ${kl.toFixed(3)}`] };
    return { data, layout: fig.layout };
  },
};

window.latentLabLiveUpdaters = UPDATERS;  // the tests compare them with the Python figure functions

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__latentLabPlotly) {
    window.__latentLabPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { window.__latentLabPlotly = null; reject(new Error("plotly.js could not be loaded from " + src)); };
      document.head.appendChild(s);
    });
  }
  return window.__latentLabPlotly;
}

function sliderInput(key) {
  return document.querySelector(`.st-key-${key} input[type="range"]`);
}

// Streamlit calls this function again with new data on every rerun, on the same host element, and
// runs the returned cleanup only when the element goes away. So the state (the last server figure,
// the one MutationObserver) lives on the host: a second observer per rerun would redraw the chart
// once more per rerun on every slider move (the lag grew with each move).
export default function ({ parentElement, data }) {
  const host = parentElement.querySelector(".ll-live");
  const plot = host.querySelector(".ll-plot");
  plot.setAttribute("role", "img");
  plot.setAttribute("aria-label", data.alt || "");
  const st = host.__latentLab || (host.__latentLab = { observer: null, frame: 0 });
  const watch = data.watch || {};
  const update = UPDATERS[data.updater];
  const sig = JSON.stringify(data.fig);  // Streamlit may call again with the same figure: keep the old object
  if (sig !== st.serverSig) [st.server, st.serverSig] = [data.fig, sig];  // the figure Python made on the last run
  st.last = JSON.stringify(data.values);  // the slider values that figure was made from
  const values = () => {
    const v = {};
    for (const [name, key] of Object.entries(watch)) {
      const el = sliderInput(key);
      const num = el ? parseFloat(el.value) : NaN;
      v[name] = Number.isFinite(num) ? num : data.values[name];
    }
    return v;
  };
  const draw = (Plotly) => {
    st.frame = 0;
    const v = values();
    const key = JSON.stringify(v);
    let fig = st.server;
    let origin = "server";
    if (key !== st.last && update) {  // the sliders moved since that run: recompute here
      const local = update(st.server, v);
      if (local) [fig, origin] = [local, "browser"];
    }
    if (st.drawnFrom && st.drawnFrom[0] === st.server && st.drawnFrom[1] === key) return null;  // already drawn
    st.drawnFrom = [st.server, key];
    host.dataset.values = key;
    host.dataset.origin = origin;  // which side computed what is drawn (the tests look)
    host.dataset.draws = String(Number(host.dataset.draws || 0) + 1);  // redraws so far (a test counts them)
    return Plotly.react(plot, fig.data, fig.layout, data.config);
  };
  loadPlotly(data.plotly_src).then((Plotly) => {
    draw(Plotly);
    // One observer per chart, re-attached on each run (a rerun may re-mount a slider's input). A
    // slider's value and aria-valuetext may change in separate commits: draw once per frame.
    if (st.observer) st.observer.disconnect();
    st.observer = new MutationObserver(() => {
      if (!st.frame) st.frame = requestAnimationFrame(() => draw(Plotly));
    });
    for (const key of Object.values(watch)) {
      const el = sliderInput(key);
      if (el) st.observer.observe(el, { attributes: true, attributeFilter: ["value", "aria-valuetext"] });
    }
  }).catch((err) => {
    host.querySelector(".ll-error").textContent = "This chart could not be drawn: " + err.message + ". Reload the page.";
  });
  return () => {
    if (st.observer) st.observer.disconnect();
    if (st.frame) cancelAnimationFrame(st.frame);
    st.observer = null;
    st.frame = 0;
  };
}
