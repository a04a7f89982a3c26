// A live view's watchdog, in the browser (core.ui.live_watch).
//
// A live view is a fragment with a timer (st.fragment(run_every=...)): Streamlit's frontend asks the
// server for a fragment rerun every interval. Under load a browser can be left with no such timer at
// all (the frontend clears its timers when a full run starts and re-arms them from that run's
// messages; when those are lost, nothing re-arms them): the page then sends nothing until the student
// clicks, and a training run stops when its lease lapses.
//
// The fragment mounts this component on every redraw with a new heartbeat (data.beat). When no new
// heartbeat has arrived for data.stall_ms, the component sets its trigger value "stalled": a widget
// event, so Streamlit reruns the fragment, and the fragment answers with a full rerun (st.rerun()),
// which arms the timers again. After a request that brought no heartbeat, the next wait doubles (at most
// 8 times the first), so a server too busy to answer is not asked again and again.
//
// The clock runs in a Web Worker: the page's own timers are what may be lost (a test clears them all),
// and a worker's timers are neither cleared with them nor throttled as hard in a background tab.

const WORKER = "let t = null; onmessage = (e) => { clearInterval(t); if (e.data > 0) t = setInterval(() => postMessage(0), e.data); };";

function startClock(s, tickMs, onTick) {
  try {
    const url = URL.createObjectURL(new Blob([WORKER], { type: "text/javascript" }));
    s.worker = new Worker(url);
    URL.revokeObjectURL(url);
    s.worker.onmessage = onTick;
    s.worker.postMessage(tickMs);
    s.stop = () => s.worker.terminate();
  } catch (err) {  // no workers (a locked-down browser): the page's own timer, better than none
    const t = setInterval(onTick, tickMs);
    s.stop = () => clearInterval(t);
  }
}

// Streamlit calls this again with new data on every redraw, on the same host element, and runs the
// returned cleanup only when the element goes away: the state and the one clock live on the host.
export default function ({ parentElement, data, setTriggerValue }) {
  const host = parentElement.querySelector(".ll-watch") || parentElement;
  const s = host.__latentLabWatch || (host.__latentLabWatch = { beat: null, last: 0, wait: 0, asked: 0, stop: null });
  const now = performance.now();
  if (data.beat !== s.beat) {
    s.beat = data.beat;
    s.last = now;
    s.wait = data.stall_ms;
  }
  s.active = Boolean(data.active);
  host.dataset.active = String(s.active);
  host.dataset.beat = String(s.beat);
  if (!s.stop) {
    startClock(s, Math.max(100, Math.round(data.stall_ms / 10)), () => {
      const t = performance.now();
      if (!s.active || t - s.last < s.wait) return;
      s.last = t;
      s.wait = Math.min(2 * s.wait, 8 * data.stall_ms);
      s.asked += 1;
      host.dataset.asked = String(s.asked);  // how many reruns it asked for (a test reads it)
      setTriggerValue("stalled", s.beat);
    });
  }
  return () => {
    if (s.stop) s.stop();
    s.stop = null;
  };
}
