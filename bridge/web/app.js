// Switchboard softphone: one WebSocket (/ws, docs/protocol.md) for
// signaling, control and events; one RTCPeerConnection per call.
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { ws: null, pc: null, call: null, user: null, muted: false, freq: 0, level: 0, events: [], pending: [],
  token: "", session: "", lastSeq: 0, seqs: [], dups: 0, reconnects: 0, roster: {}, parts: {} };
window.switchboard = state; // tests read freq, level and events

function log(text) {
  const line = document.createElement("div");
  line.textContent = new Date().toLocaleTimeString() + " " + text;
  $("events").prepend(line);
}

function setStatus(text) { $("status").textContent = text; }

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function connect(token) {
  state.token = token;
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  state.ws = ws;
  ws.onopen = () => send({ type: "hello", token });
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    log("socket closed " + ev.code + " " + ev.reason);
    if (state.call && ev.code < 4000) {
      // The call outlives the socket for a grace period: reconnect and
      // resume it; media never stopped.
      setStatus("reconnecting");
      setTimeout(() => { state.reconnects++; connect(state.token); }, 500);
      return;
    }
    setStatus("disconnected");
    endCall();
  };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
}

async function onMessage(m) {
  state.events.push(m.type);
  switch (m.type) {
    case "welcome":
      state.user = m.user;
      setStatus("signed in as " + m.user);
      $("login").hidden = true; $("phone").hidden = false; $("chat").hidden = false; $("people").hidden = false;
      log("welcome " + m.user + " (protocol " + m.version + ")");
      if (state.call) send({ type: "resume", call: state.call, session: state.session, seq: state.lastSeq });
      break;
    case "resumed": setStatus("in call"); log("call resumed after event " + state.lastSeq); break;
    case "answer":
      state.call = m.call;
      await state.pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      for (const c of state.pending.splice(0)) await state.pc.addIceCandidate(c);
      log("call " + m.call + " connected");
      break;
    case "ice":
      if (state.pc && state.pc.remoteDescription) await state.pc.addIceCandidate(m.candidate);
      else state.pending.push(m.candidate);
      break;
    case "incoming":
      if (state.call) { send({ type: "reject", call: m.call }); break; } // busy
      state.offer = m;
      $("caller").textContent = m.user || "unknown";
      $("incoming").hidden = false;
      log("incoming call from " + (m.user || "unknown"));
      if (params.get("answer")) accept();
      break;
    case "ringing": log("ringing"); break;
    case "answered": log("answered"); setStatus("in call"); break;
    case "hangup":
      log("hangup " + (m.cause || "") + (m.code ? " " + m.code : ""));
      if (state.offer && state.offer.call === m.call) { state.offer = null; $("incoming").hidden = true; break; }
      endCall();
      break;
    case "chat": addChat("them", m.text); break;
    case "presence":
      state.roster[m.user] = m.status;
      renderRoster(m.user, m.status, m.text);
      break;
    case "moved":
      // The call's leg now belongs to another call or room: its events
      // follow, numbered by that session.
      state.session = m.session; state.lastSeq = 0; state.parts = {}; $("parts").innerHTML = "";
      log("moved to " + m.session);
      break;
    case "event":
      if (m.call !== state.call) break; // a watched session's
      if (m.session && m.session !== state.session) { state.session = m.session; state.lastSeq = 0; }
      if (m.seq <= state.lastSeq) { state.dups++; break; } // never shown twice
      state.lastSeq = m.seq;
      state.seqs.push(m.seq);
      log("#" + m.seq + " " + m.event.type + (m.event.data ? " " + JSON.stringify(m.event.data) : ""));
      participant(m.event);
      break;
    case "error": log("error " + m.code + ": " + m.error); break;
    default: log(m.type);
  }
}

// newPeer makes the call's RTCPeerConnection with the microphone on it.
async function newPeer() {
  const pc = new RTCPeerConnection();
  state.pc = pc;
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  for (const t of mic.getAudioTracks()) pc.addTrack(t, mic);
  micLevel(mic);
  pc.ontrack = (ev) => { $("remote").srcObject = ev.streams[0] || new MediaStream([ev.track]); analyse(ev.track); };
  pc.onicecandidate = (ev) => { if (ev.candidate && state.call) send({ type: "ice", call: state.call, candidate: ev.candidate.toJSON() }); };
  pc.oniceconnectionstatechange = async () => {
    // The network changed under the call: restart ICE with a new offer.
    if (pc.iceConnectionState !== "failed" || !state.call || state.pc !== pc) return;
    log("connection lost: restarting ICE");
    await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
    await gathered(pc);
    send({ type: "offer", call: state.call, sdp: pc.localDescription.sdp });
  };
  return pc;
}

// gathered waits (at most a second) for the host candidates, which then
// go in the SDP.
function gathered(pc) {
  return new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
    setTimeout(done, 1000);
  });
}

// accept answers the call offered by the server.
async function accept() {
  const m = state.offer;
  if (!m) return;
  state.offer = null;
  $("incoming").hidden = true;
  const pc = await newPeer();
  state.call = m.call;
  await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
  for (const c of state.pending.splice(0)) await pc.addIceCandidate(c);
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  send({ type: "answer", call: m.call, sdp: pc.localDescription.sdp });
  $("call").disabled = true; $("hangup").disabled = false; $("mute").disabled = false; $("hold").disabled = false;
  setStatus("in call");
  log("answered the call from " + (m.user || "unknown"));
  quality();
}

async function call(target) {
  const pc = await newPeer();
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  send({ type: "call", to: target, sdp: pc.localDescription.sdp });
  $("call").disabled = true; $("hangup").disabled = false; $("mute").disabled = false; $("hold").disabled = false;
  setStatus("calling " + target);
  log("calling " + target);
  quality();
}

function endCall() {
  if (state.pc) state.pc.close();
  state.pc = null; state.call = null; state.session = ""; state.lastSeq = 0; state.parts = {}; $("parts").innerHTML = "";
  $("call").disabled = false; $("hangup").disabled = true; $("mute").disabled = true; $("hold").disabled = true;
  state.held = false; $("hold").textContent = "Hold";
  if (state.user) setStatus("signed in as " + state.user);
}

// analyse measures what we hear: level for the meter and the dominant
// frequency (tests check a tone arrives).
function analyse(track) {
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const an = ctx.createAnalyser();
  an.fftSize = 4096;
  src.connect(an);
  const bins = new Float32Array(an.frequencyBinCount);
  const wave = new Float32Array(an.fftSize);
  const tick = () => {
    if (!state.pc) return;
    an.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    an.getFloatTimeDomainData(wave);
    let sum = 0;
    for (const v of wave) sum += v * v;
    state.level = Math.sqrt(sum / wave.length);
    state.freq = state.level > 0.01 ? best * ctx.sampleRate / an.fftSize : 0;
    $("level").value = Math.min(1, state.level * 4);
    requestAnimationFrame(tick);
  };
  tick();
}

// quality shows loss, jitter and RTT from getStats, with an E-model MOS.
async function quality() {
  while (state.pc) {
    await new Promise((r) => setTimeout(r, 2000));
    if (!state.pc) return;
    let lost = 0, got = 0, jitter = 0, rtt = 0;
    (await state.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") { lost = s.packetsLost; got = s.packetsReceived; jitter = s.jitter || 0; }
      if (s.type === "candidate-pair" && s.state === "succeeded" && s.currentRoundTripTime) rtt = s.currentRoundTripTime;
    });
    const loss = got + lost > 0 ? lost / (got + lost) : 0;
    const delay = rtt * 500 + jitter * 2000 + 20; // ms, one way
    let r = 93.2 - (delay > 177.3 ? 0.11 * delay - 7.5 : 0.024 * delay) - 95 * loss / (loss + 0.1);
    r = Math.max(0, Math.min(100, r));
    const mos = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
    $("quality").textContent = `loss ${(loss * 100).toFixed(1)}% jitter ${(jitter * 1000).toFixed(0)} ms RTT ${(rtt * 1000).toFixed(0)} ms MOS ${mos.toFixed(1)}`;
  }
}

// participant keeps the call's legs and their state (muted, on hold,
// speaking) from the call's events.
function participant(ev) {
  const id = ev.leg_id;
  if (!id) return;
  const p = state.parts[id] || (state.parts[id] = { muted: false, held: false, speaking: false });
  switch (ev.type) {
    case "leg.ended": case "leg.left": case "leg.moved": delete state.parts[id]; break;
    case "leg.muted": p.muted = true; break;
    case "leg.unmuted": p.muted = false; break;
    case "leg.held": p.held = true; break;
    case "leg.unheld": p.held = false; break;
    case "speaking": p.speaking = true; break;
    case "silent": p.speaking = false; break;
  }
  $("parts").innerHTML = "";
  for (const [leg, q] of Object.entries(state.parts)) {
    const li = document.createElement("li");
    const flags = [q.speaking && "speaking", q.muted && "muted", q.held && "on hold"].filter(Boolean).join(", ");
    li.textContent = (leg === state.call ? "you" : leg.slice(0, 12)) + (flags ? " — " + flags : "");
    $("parts").append(li);
  }
}

// micLevel shows the microphone's level.
function micLevel(stream) {
  const ctx = new AudioContext();
  const an = ctx.createAnalyser();
  ctx.createMediaStreamSource(stream).connect(an);
  const wave = new Float32Array(an.fftSize);
  const tick = () => {
    if (!state.pc) return;
    an.getFloatTimeDomainData(wave);
    let sum = 0;
    for (const v of wave) sum += v * v;
    $("mic").value = Math.min(1, Math.sqrt(sum / wave.length) * 4);
    requestAnimationFrame(tick);
  };
  tick();
}

// renderRoster shows a user's presence (and a call button).
function renderRoster(user, status, note) {
  let li = document.getElementById("u-" + user);
  if (!li) {
    li = document.createElement("li");
    li.id = "u-" + user;
    li.innerHTML = '<span class="name"></span><span class="status"></span>';
    li.querySelector(".name").onclick = () => { $("target").value = user; };
    $("roster").append(li);
  }
  li.querySelector(".name").textContent = user + (note ? " — " + note : "");
  const s = li.querySelector(".status");
  s.textContent = status;
  s.className = "status " + status;
}

function addChat(who, text) {
  const line = document.createElement("div");
  line.textContent = who + ": " + text;
  $("messages").append(line);
}

for (const d of "123456789*0#") {
  const b = document.createElement("button");
  b.textContent = d;
  b.onclick = () => { if (state.call) { send({ type: "dtmf", call: state.call, digit: d }); log("sent digit " + d); } };
  $("pad").append(b);
}
$("signin").onclick = () => connect($("token").value.trim());
$("accept").onclick = () => accept();
$("decline").onclick = () => { if (state.offer) send({ type: "reject", call: state.offer.call }); state.offer = null; $("incoming").hidden = true; };
$("call").onclick = () => call($("target").value.trim());
$("hangup").onclick = () => { send({ type: "hangup", call: state.call }); endCall(); };
$("mute").onclick = () => {
  state.muted = !state.muted;
  for (const s of state.pc ? state.pc.getSenders() : []) if (s.track) s.track.enabled = !state.muted;
  $("mute").textContent = state.muted ? "Unmute" : "Mute";
  send({ type: state.muted ? "mute" : "unmute", call: state.call }); // the others see it
};
$("hold").onclick = () => {
  state.held = !state.held;
  $("hold").textContent = state.held ? "Resume" : "Hold";
  send({ type: state.held ? "hold" : "unhold", call: state.call });
};
$("send").onclick = () => {
  const text = $("text").value;
  if (!text || !state.call) return;
  send({ type: "chat", call: state.call, text });
  addChat("me", text);
  $("text").value = "";
};
if (params.get("token")) { $("token").value = params.get("token"); connect(params.get("token")); }
if (params.get("call")) {
  const target = params.get("call");
  $("target").value = target;
  const wait = setInterval(() => { if (state.user) { clearInterval(wait); call(target); } }, 100);
}
