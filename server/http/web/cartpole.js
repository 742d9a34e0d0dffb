// The CartPole card: the cart and the pole are simulated here (CartPole-v1's equations), and at
// each step the served policy chooses the push: one KServe v2 call a step, as an agent acts.
"use strict";

const POLE = { gravity: 9.8, cartMass: 1.0, poleMass: 0.1, halfLength: 0.5, force: 10.0, tau: 0.02 };
const LIMITS = { x: 2.4, angle: (12 * 2 * Math.PI) / 360, steps: 500 };

// One Euler step of the cart-pole, as gymnasium's CartPole-v1 takes it.
function cartPoleStep([x, v, angle, spin], action) {
  const force = action === 1 ? POLE.force : -POLE.force;
  const total = POLE.cartMass + POLE.poleMass;
  const poleMoment = POLE.poleMass * POLE.halfLength;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const temp = (force + poleMoment * spin * spin * sin) / total;
  const spinAcc = (POLE.gravity * sin - cos * temp) /
    (POLE.halfLength * (4.0 / 3.0 - (POLE.poleMass * cos * cos) / total));
  const acc = temp - (poleMoment * spinAcc * cos) / total;
  return [x + POLE.tau * v, v + POLE.tau * acc, angle + POLE.tau * spin, spin + POLE.tau * spinAcc];
}

function drawCartPole([x, , angle], action, step) {
  const canvas = $("cartpole");
  const pen = canvas.getContext("2d");
  const scale = canvas.width / (2 * LIMITS.x);
  const track = canvas.height - 60;
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
  pen.strokeStyle = "#888";
  pen.lineWidth = 2;
  pen.beginPath(); pen.moveTo(0, track); pen.lineTo(canvas.width, track); pen.stroke();
  const cartX = canvas.width / 2 + x * scale;
  pen.fillStyle = "#282828";
  pen.fillRect(cartX - 25, track - 26, 50, 26);
  pen.strokeStyle = "#cc9966";
  pen.lineWidth = 8;
  pen.beginPath();
  pen.moveTo(cartX, track - 26);
  pen.lineTo(cartX + Math.sin(angle) * scale * 2 * POLE.halfLength, track - 26 - Math.cos(angle) * scale * 2 * POLE.halfLength);
  pen.stroke();
  const arrow = action === 1 ? 1 : -1;
  pen.fillStyle = pen.strokeStyle = "#c82828";
  pen.lineWidth = 4;
  pen.beginPath(); pen.moveTo(cartX - 18 * arrow, track + 22); pen.lineTo(cartX + 18 * arrow, track + 22); pen.stroke();
  pen.beginPath();
  pen.moveTo(cartX + 26 * arrow, track + 22); pen.lineTo(cartX + 18 * arrow, track + 15); pen.lineTo(cartX + 18 * arrow, track + 29);
  pen.fill();
  pen.fillStyle = "#000";
  pen.font = "13px sans-serif";
  pen.fillText(`step ${step} · push ${action === 1 ? "right" : "left"}`, 8, 18);
}

async function act(observation) {
  const body = { inputs: [{ name: "observation", datatype: "FP32", shape: [1, 4], data: observation }],
    outputs: [{ name: "action" }] };
  const response = await fetch("/v2/models/cartpole_policy/infer", {
    method: "POST", body: JSON.stringify(body), headers: headers({ "Content-Type": "application/json" }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer.outputs[0].data[0];
}

async function playEpisode() {
  const button = $("cartpole-play");
  button.disabled = true;
  const card = $("cartpole-card");
  card.dataset.steps = "0";
  // gymnasium starts each state variable uniformly in [-0.05, 0.05]
  let state = [0, 0, 0, 0].map(() => Math.random() * 0.1 - 0.05);
  let step = 0;
  const calls = [];
  try {
    while (step < LIMITS.steps && Math.abs(state[0]) <= LIMITS.x && Math.abs(state[2]) <= LIMITS.angle) {
      const started = performance.now();
      const action = await act(state);
      calls.push(performance.now() - started);
      state = cartPoleStep(state, action);
      step += 1;
      drawCartPole(state, action, step);
      card.dataset.steps = String(step);
      // real time: CartPole's step is 0.02 s
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 20 - (performance.now() - started))));
    }
    calls.sort((a, b) => a - b);
    const median = calls[Math.floor(calls.length / 2)];
    $("cartpole-meta").textContent = `${step === LIMITS.steps ? "balanced for all" : "the pole fell after"} ${step} steps · ` +
      `${calls.length} calls, median ${median.toFixed(1)} ms round trip`;
  } catch (error) {
    fail($("cartpole-meta"), error);
  } finally {
    button.disabled = false;
    card.dataset.done = "1";
  }
}
drawCartPole([0, 0, 0, 0], 1, 0);
$("cartpole-play").addEventListener("click", playEpisode);
