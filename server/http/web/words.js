// The words card: a word's nearest words by the served word vectors (word_embed, then
// word_similar: two KServe v2 calls), then the word and its neighbours embedded (a third call)
// and drawn on the two directions they differ most along (PCA, computed here).
"use strict";

async function v2(model, inputs) {
  const response = await fetch(`/v2/models/${model}/infer`, {
    method: "POST", body: JSON.stringify({ inputs }), headers: headers({ "Content-Type": "application/json" }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return Object.fromEntries(answer.outputs.map((o) => [o.name, o]));
}

async function embedWords(words) {
  const out = await v2("word_embed", [
    { name: "word", datatype: "BYTES", shape: [words.length, 1], data: words },
  ]);
  const size = out.vector.shape[1];
  const vectors = words.map((_, i) => out.vector.data.slice(i * size, (i + 1) * size));
  return { vectors, known: out.known.data };
}

// The top two principal directions of a few rows, by power iteration (deflated).
function project(rows) {
  const dims = rows[0].length;
  const mean = Array.from({ length: dims }, (_, d) => rows.reduce((s, r) => s + r[d], 0) / rows.length);
  const centred = rows.map((r) => r.map((v, d) => v - mean[d]));
  const directions = [];
  for (let axis = 0; axis < 2; axis++) {
    let v = Array.from({ length: dims }, (_, d) => Math.cos(d + axis));
    for (let step = 0; step < 200; step++) {
      const scores = centred.map((r) => r.reduce((s, x, d) => s + x * v[d], 0));
      let next = Array.from({ length: dims }, (_, d) => centred.reduce((s, r, i) => s + r[d] * scores[i], 0));
      for (const u of directions) {
        const along = next.reduce((s, x, d) => s + x * u[d], 0);
        next = next.map((x, d) => x - along * u[d]);
      }
      const norm = Math.hypot(...next) || 1;
      v = next.map((x) => x / norm);
    }
    directions.push(v);
  }
  return centred.map((r) => directions.map((u) => r.reduce((s, x, d) => s + x * u[d], 0)));
}

function drawMap(words, points) {
  const canvas = $("words-map");
  const pen = canvas.getContext("2d");
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const spot = (v, lo, hi, size) => 40 + ((v - lo) / (hi - lo || 1)) * (size - 100);
  pen.font = "13px system-ui, sans-serif";
  words.forEach((word, i) => {
    const x = spot(xs[i], Math.min(...xs), Math.max(...xs), canvas.width);
    const y = spot(ys[i], Math.min(...ys), Math.max(...ys), canvas.height) + 20;
    pen.fillStyle = i === 0 ? COLORS[0] : COLORS[2];
    pen.beginPath();
    pen.arc(x, y, i === 0 ? 6 : 4, 0, 2 * Math.PI);
    pen.fill();
    pen.font = i === 0 ? "bold 15px system-ui, sans-serif" : "13px system-ui, sans-serif";
    pen.fillText(word, x + 8, y + 4);
  });
}

async function similarWords() {
  const word = $("words-text").value.trim().toLowerCase();
  const card = $("words-card");
  const started = performance.now();
  try {
    const asked = await embedWords([word]);
    if (!asked.known[0]) {
      $("words-near").replaceChildren();
      card.dataset.word = word;
      card.dataset.neighbours = "";
      $("words-meta").textContent = `'${word}' is not in the vocabulary (words of the Python documentation)`;
      return;
    }
    const found = await v2("word_similar", [
      { name: "vector", datatype: "FP32", shape: [1, asked.vectors[0].length], data: asked.vectors[0] },
    ]);
    const near = found.word.data.map((w, i) => ({ word: w, score: found.score.data[i] }))
      .filter((n) => n.word !== word).slice(0, 10);
    $("words-near").replaceChildren(...near.map((n) => {
      const chip = document.createElement("li");
      chip.textContent = `${n.word} ${n.score.toFixed(2)}`;
      return chip;
    }));
    const words = [word, ...near.map((n) => n.word)];
    drawMap(words, project((await embedWords(words)).vectors));
    card.dataset.word = word;
    card.dataset.neighbours = near.map((n) => n.word).join(",");
    $("words-meta").textContent = `the 10 nearest words by cosine · ` +
      `${(performance.now() - started).toFixed(1)} ms, three calls (embed, search, embed)`;
  } catch (error) {
    fail($("words-meta"), error);
  }
}
$("words-go").addEventListener("click", similarWords);
$("words-text").addEventListener("keydown", (e) => { if (e.key === "Enter") similarWords(); });
similarWords();
