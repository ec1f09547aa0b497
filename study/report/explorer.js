// The study explorer (report.html): linked Plotly views of the study's measurements, driven by the
// controls. DATA is study.report.explorer.explorer_data's JSON; every number shown is one of it.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("study-data").textContent);
  const AXES = ["backend", "depth", "arch", "seed", "activation", "norm", "epochs"];
  const NUMBERS = ["depth", "seed", "epochs"];
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];
  const CONFIG = { displaylogo: false, responsive: true };
  const state = {};

  function key(...parts) { return parts.join("|"); }
  function runKey(s) { return DATA.run_index[key(s.backend, s.arch, s.depth, s.seed, s.activation, s.norm, s.epochs)]; }
  function label(s) { return `${s.arch}-${s.depth} ${s.backend} seed ${s.seed}`; }
  function color(i) { return COLORS[i % COLORS.length]; }

  function controls() {
    const box = document.getElementById("explorer-controls");
    for (const axis of AXES) {
      const values = DATA.axes[axis];
      const wrap = document.createElement("label");
      wrap.textContent = axis + " ";
      const select = document.createElement("select");
      select.id = "control-" + axis;
      for (const v of values) {
        const option = document.createElement("option");
        option.value = String(v);
        option.textContent = String(v);
        select.appendChild(option);
      }
      select.disabled = values.length < 2;
      const preferred = DATA.start[axis];
      select.value = String(preferred === undefined ? values[0] : preferred);
      select.addEventListener("change", () => { read(); render(); });
      wrap.appendChild(select);
      box.appendChild(wrap);
    }
    read();
  }

  function read() {
    for (const axis of AXES) {
      const raw = document.getElementById("control-" + axis).value;
      state[axis] = NUMBERS.includes(axis) ? Number(raw) : raw;
    }
  }

  function draw(id, traces, layout, missing) {
    const div = document.getElementById(id);
    const note = document.getElementById(id + "-note");
    const shown = traces.filter((t) => t.y && t.y.length);
    note.textContent = shown.length ? "" : missing;
    div.style.display = shown.length ? "" : "none";
    if (!shown.length) { Plotly.purge(div); return; }
    const base = { margin: { t: 40, r: 10, b: 50, l: 60 }, hovermode: "closest", legend: { orientation: "h", y: -0.2 } };
    Plotly.react(div, shown, Object.assign(base, layout), CONFIG);
  }

  function curves() {
    const traces = [];
    DATA.axes.depth.forEach((depth, i) => {
      const s = Object.assign({}, state, { depth });
      const run = runKey(s);
      const h = run && DATA.history[run];
      if (!h) return;
      const width = depth === state.depth ? 3.5 : 1.2;
      for (const [metric, dash] of [["train_error", "solid"], ["test_error", "dot"]]) {
        traces.push({
          x: h.epoch, y: h[metric], mode: "lines", name: `depth ${depth} ${metric.replace("_", " ")}`,
          line: { color: color(i), width, dash }, customdata: h.epoch.map(() => run),
          hovertemplate: `${metric}: %{y:.4f}<br>epoch %{x}<br>%{customdata}<extra></extra>`,
        });
      }
    });
    draw("chart-curves", traces, {
      title: { text: `${state.arch} nets, every depth (${state.backend}, seed ${state.seed}); depth ${state.depth} bold` },
      xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: "error" }, rangemode: "tozero" },
    }, "no training curves for these controls (history.csv lacks them)");
  }

  function gradients() {
    const traces = [];
    DATA.axes.arch.forEach((arch, panel) => {
      const s = Object.assign({}, state, { arch });
      const axis = panel ? "2" : "";
      const init = DATA.init_grads[key(arch, s.depth, s.activation, s.norm)];
      if (init) {
        traces.push({
          x: init.layer_index, y: init.grad_norm, text: init.layer, name: `${arch}: at initialization`,
          xaxis: "x" + axis, yaxis: "y" + axis, mode: "lines+markers", line: { color: color(panel), dash: "dot" },
          hovertemplate: `%{text}<br>|dL/dW| %{y:.3g}<br>${arch}-${s.depth} at init, seed ${init.seed} (${init.backend})<extra></extra>`,
        });
      }
      const run = runKey(s);
      const trained = run && DATA.trained_grads[run];
      if (trained) {
        traces.push({
          x: trained.layer_index, y: trained.grad_norm, text: trained.layer, name: `${arch}: epoch ${trained.epoch}`,
          xaxis: "x" + axis, yaxis: "y" + axis, mode: "lines+markers", line: { color: color(panel) },
          hovertemplate: `%{text}<br>|dL/dW| %{y:.3g}<br>${run}, epoch ${trained.epoch}<extra></extra>`,
        });
      }
    });
    const axes = {};
    DATA.axes.arch.forEach((arch, panel) => {
      const suffix = panel ? "2" : "";
      const n = DATA.axes.arch.length;
      axes["xaxis" + suffix] = { domain: [panel / n + (panel ? 0.04 : 0), (panel + 1) / n - (panel ? 0 : 0.04)],
        title: { text: `${arch}: layer (input to output)` }, anchor: "y" + suffix };
      axes["yaxis" + suffix] = { type: "log", title: { text: panel ? "" : "gradient norm" }, anchor: "x" + suffix,
        matches: panel ? "y" : undefined };  // one scale: plain and residual compared at a glance
    });
    draw("chart-grads", traces, Object.assign({
      title: { text: `Per-layer gradient norms, depth ${state.depth} (${state.backend}, seed ${state.seed})` },
    }, axes), "no gradient norms for these controls (gradflow.csv and gradnorms.csv lack them)");
  }

  function ratios() {
    const traces = [];
    const init = DATA.init_ratios[key(state.arch, state.depth, state.activation, state.norm)];
    const run = runKey(state);
    const trained = run && DATA.trained_ratios[run];
    for (const [entry, name, dash] of [[init, "at initialization", "dot"], [trained, "after training", "solid"]]) {
      if (!entry) continue;
      traces.push({
        x: entry.block_index, y: entry.ratio, text: entry.block, name, mode: "lines+markers", line: { dash },
        hovertemplate: `%{text}<br>ratio %{y:.3f}<br>${name === "after training" ? run : state.arch + "-" + state.depth + " at init, seed " + entry.seed}<extra></extra>`,
      });
    }
    if (traces.length) {
      const n = Math.max(...traces.map((t) => t.x.length));
      traces.push({ x: [0, n - 1], y: [1, 1], mode: "lines", name: "norm preserved", line: { color: "#999", width: 1 }, hoverinfo: "skip" });
    }
    draw("chart-ratios", traces, {
      title: { text: `Block gradient ratio |dL/dx_in| / |dL/dx_out|, ${label(state)}` },
      xaxis: { title: { text: "block (input to output)" } }, yaxis: { type: "log", title: { text: "ratio" } },
    }, "no block gradient ratios for these controls (norms.csv lacks them)");
  }

  function lesion() {
    const traces = [];
    DATA.axes.seed.forEach((seed, i) => {
      const run = runKey(Object.assign({}, state, { seed }));
      const entry = run && DATA.lesion[run];
      if (!entry) return;
      traces.push({
        x: entry.k, y: entry.test_error, mode: "lines+markers", name: `seed ${seed}`,
        line: { color: color(i), width: seed === state.seed ? 3.5 : 1.2 }, customdata: entry.n,
        hovertemplate: `%{x} block(s) deleted: test error %{y:.3f}<br>mean of %{customdata} deletion(s)<br>${run}<extra></extra>`,
      });
    });
    draw("chart-lesion", traces, {
      title: { text: `Lesion: ${state.arch}-${state.depth} (${state.backend}); seed ${state.seed} bold` },
      xaxis: { title: { text: "blocks deleted (0: intact; 1: every single block; more: random draws)" } },
      yaxis: { title: { text: "test error" }, range: [0, 1] },
    }, "no lesion results for these controls (lesion.csv lacks them)");
  }

  function depthError() {
    const traces = [];
    const main = ["activation", "norm", "epochs"].every((axis) => state[axis] === DATA.main[axis]);
    let i = 0;
    for (const backend of DATA.axes.backend) {
      for (const arch of DATA.axes.arch) {
        const cells = main ? DATA.depth_error.filter((c) => c.backend === backend && c.arch === arch) : [];
        const bold = backend === state.backend && arch === state.arch;
        if (cells.length) {
          traces.push({
            x: cells.map((c) => c.depth), y: cells.map((c) => c.mean), mode: "lines+markers",
            name: `${arch}, ${backend} (mean, ${Math.round(100 * (1 - DATA.alpha))} % CI)`,
            line: { color: color(i), width: bold ? 3.5 : 1.2, dash: arch === "plain" ? "solid" : "dash" },
            error_y: { type: "data", symmetric: false, array: cells.map((c) => c.ci_high - c.mean),
              arrayminus: cells.map((c) => c.mean - c.ci_low) },
            customdata: cells.map((c) => [c.ci_low, c.ci_high, c.n]),
            hovertemplate: `${arch}-%{x}, ${backend}<br>mean final train error %{y:.4f}<br>CI [%{customdata[0]:.4f}, %{customdata[1]:.4f}], n = %{customdata[2]}<extra></extra>`,
          });
        }
        const runs = DATA.final.filter((r) => r.backend === backend && r.arch === arch &&
          r.activation === state.activation && r.norm === state.norm && r.epochs === state.epochs);
        traces.push({
          x: runs.map((r) => r.depth), y: runs.map((r) => r.final_train_error), text: runs.map((r) => r.run_key),
          mode: "markers", marker: { color: color(i), size: 5, opacity: 0.5 }, showlegend: false,
          hovertemplate: "%{text}<br>final train error %{y:.4f}<extra></extra>",
        });
        i += 1;
      }
    }
    draw("chart-depth", traces, {
      title: { text: main ? "Final training error vs depth (each run, and the verdict's means and intervals)"
        : `Final training error vs depth, ${state.activation}, ${state.norm}, ${state.epochs} epochs (the verdict's ` +
          `intervals are of ${DATA.main.activation}, ${DATA.main.norm}, ${DATA.main.epochs} epochs)` },
      xaxis: { title: { text: "depth" }, type: "log", tickvals: DATA.axes.depth },
      yaxis: { title: { text: "final training error" }, rangemode: "tozero" },
    }, "no results for these controls");
  }

  function render() {
    curves();
    gradients();
    ratios();
    lesion();
    depthError();
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
  }

  controls();
  render();
})();
