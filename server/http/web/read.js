// The house-number card: one Vision `read` call to the read_number pipeline (detector, crops,
// classifier and ordering run in the server as one ensemble), then each digit's box drawn.
"use strict";

const house = $("house");
const housePaint = house.getContext("2d");

function drawReading(picture, reading) {
  house.width = picture.width;
  house.height = picture.height;
  housePaint.drawImage(picture, 0, 0);
  housePaint.lineWidth = Math.max(2, house.width / 160);
  housePaint.font = `${Math.max(12, house.width / 20)}px system-ui, sans-serif`;
  reading.characters.forEach((c, i) => {
    const color = COLORS[i % COLORS.length];
    const { x1, y1, x2, y2 } = c.box;
    housePaint.strokeStyle = color;
    housePaint.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const height = parseInt(housePaint.font, 10) + 4;
    const width = housePaint.measureText(c.text).width + 8;
    housePaint.fillStyle = color;
    housePaint.fillRect(x1, y2, width, height);
    housePaint.fillStyle = "#fff";
    housePaint.fillText(c.text, x1 + 4, y2 + height - 5);
  });
  house.dataset.characters = String(reading.characters.length);
}

async function readHouse(blob) {
  const picture = await createImageBitmap(blob);
  try {
    const answer = await vision("read_number", "read", blob);
    const reading = answer.results[0];
    drawReading(picture, reading);
    $("house-text").textContent = reading.text || "nothing read";
    $("house-digits").replaceChildren(...reading.characters.map((c) => {
      const chip = document.createElement("li");
      chip.textContent = `${c.text} ${(c.score * 100).toFixed(0)}%`;
      return chip;
    }));
    // An ensemble has no batches of its own: its steps batch in their models.
    $("house-meta").textContent = `${answer.round_trip_ms.toFixed(1)} ms round trip · ` +
      `${answer.server_ms.toFixed(1)} ms in the server, four models`;
  } catch (error) {
    fail($("house-meta"), error);
  }
}

async function openHouseSample() {
  await readHouse(await (await fetch("/ui/house.png")).blob());
}
$("house-sample").addEventListener("click", openHouseSample);
$("house-file").addEventListener("change", () => {
  const file = $("house-file").files[0];
  if (file) readHouse(file);
});
openHouseSample();
