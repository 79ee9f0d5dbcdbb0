// The three charts, drawn with the vendored Chart.js (window.Chart, see vendor/README.md).
// Animations are off: the charts are redrawn on every stats refresh and must stay cheap.

const COLORS = {
  scans: "#4aa3ff",
  threats: "#ef4e4e",
  // flagged domains take their worst level's colour (style.css --suspicious / --malicious)
  SUSPICIOUS: "#f0b429",
  MALICIOUS: "#ef4e4e",
  categories: ["#4aa3ff", "#ef4e4e", "#f0b429", "#2fbf71", "#b07cff", "#ff7ab6", "#56d4dd", "#c8a97e", "#8a96a3"],
};

/** "12:05" in local time, from an ISO string or epoch seconds/milliseconds. */
function timeLabel(t) {
  let date;
  if (typeof t === "number") date = new Date(t < 1e12 ? t * 1000 : t);
  else date = new Date(t);
  if (Number.isNaN(date.getTime())) return String(t);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

export class Charts {
  constructor() {
    this.ready = typeof window.Chart === "function";
    if (!this.ready) return;
    const Chart = window.Chart;
    Chart.defaults.color = "#8a96a3";
    Chart.defaults.borderColor = "#2b3642";
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.plugins.legend.labels.boxWidth = 12;

    // Bars per bucket: a line would draw a ramp across hours with no scans at all.
    this.time = new Chart(document.getElementById("chart-time"), {
      type: "bar",
      data: {
        labels: [],
        datasets: [
          { label: "scans", data: [], backgroundColor: COLORS.scans },
          { label: "threats", data: [], backgroundColor: COLORS.threats },
        ],
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, interaction: { mode: "index", intersect: false } },
    });
    this.domains = new Chart(document.getElementById("chart-domains"), {
      type: "bar",
      data: { labels: [], datasets: [{ label: "flagged scans", data: [], backgroundColor: [] }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    this.categories = new Chart(document.getElementById("chart-categories"), {
      type: "doughnut",
      data: { labels: [], datasets: [{ data: [], backgroundColor: COLORS.categories, borderWidth: 0 }] },
      options: { plugins: { legend: { position: "right" } } },
    });
  }

  /** Redraw from a GET /api/v1/stats answer (or a snapshot's stats). */
  update(stats) {
    if (!this.ready || !stats) return;
    const series = Array.isArray(stats.timeseries) ? stats.timeseries : [];
    this.time.data.labels = series.map((p) => timeLabel(p.t));
    this.time.data.datasets[0].data = series.map((p) => Number(p.scans) || 0);
    this.time.data.datasets[1].data = series.map((p) => Number(p.threats) || 0);
    this.time.update("none");

    const domains = (Array.isArray(stats.top_domains) ? stats.top_domains : []).slice(0, 8);
    this.domains.data.labels = domains.map((d) => String(d.domain));
    this.domains.data.datasets[0].data = domains.map((d) => Number(d.count) || 0);
    this.domains.data.datasets[0].backgroundColor = domains.map((d) => (d.threat_level === "MALICIOUS" ? COLORS.MALICIOUS : COLORS.SUSPICIOUS));
    this.domains.update("none");

    const categories = (Array.isArray(stats.indicator_categories) ? stats.indicator_categories : []).slice(0, 9);
    this.categories.data.labels = categories.map((c) => String(c.category));
    this.categories.data.datasets[0].data = categories.map((c) => Number(c.count) || 0);
    this.categories.update("none");
  }
}
