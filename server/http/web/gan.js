// The GAN card: 16 digits of the class chosen, made by the served conditional GAN from 16
// seeds (one KServe v2 call); "Other seeds" moves on to the next 16, the same class.
"use strict";

let ganSeed = 0;

async function generateDigits() {
  const digit = Number($("gan-class").value);
  const seeds = Array.from({ length: 16 }, (_, i) => ganSeed + i);
  const body = {
    inputs: [
      { name: "class", datatype: "INT64", shape: [16, 1], data: seeds.map(() => digit) },
      { name: "seed", datatype: "INT64", shape: [16, 1], data: seeds },
    ],
  };
  const started = performance.now();
  try {
    const response = await fetch("/v2/models/mnist_cgan/infer", {
      method: "POST", body: JSON.stringify(body), headers: headers({ "Content-Type": "application/json" }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    const pixels = answer.outputs[0].data; // 16 x 28 x 28 x 1, row-major
    const canvas = $("gan-grid");
    const pen = canvas.getContext("2d");
    const tile = pen.createImageData(28, 28);
    const cell = canvas.width / 4;
    for (let k = 0; k < 16; k++) {
      for (let p = 0; p < 784; p++) {
        const v = pixels[k * 784 + p];
        tile.data.set([v, v, v, 255], p * 4);
      }
      // drawn at 28x28, then scaled up to its cell without smoothing
      const small = document.createElement("canvas");
      small.width = small.height = 28;
      small.getContext("2d").putImageData(tile, 0, 0);
      pen.imageSmoothingEnabled = false;
      pen.drawImage(small, (k % 4) * cell, Math.floor(k / 4) * cell, cell, cell);
    }
    $("gan-card").dataset.drawn = `${digit}:${ganSeed}`;
    $("gan-meta").textContent = `16 digits '${digit}' from seeds ${ganSeed}..${ganSeed + 15} · ` +
      `${(performance.now() - started).toFixed(1)} ms round trip, one request`;
  } catch (error) {
    fail($("gan-meta"), error);
  }
}
$("gan-class").addEventListener("change", () => { ganSeed = 0; generateDigits(); });
$("gan-more").addEventListener("click", () => { ganSeed += 16; generateDigits(); });
generateDigits();
