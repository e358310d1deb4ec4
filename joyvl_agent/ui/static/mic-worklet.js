// joyvl-agent web UI: the microphone's AudioWorklet (loaded by app.js from /ui/mic-worklet.js).
//
// Takes the microphone at the audio context's rate (often 48 kHz), averages it down to 16 kHz
// mono (a box filter: each output sample is the mean of the input samples it covers) and posts
// frames of 100 ms as Int16Array (signed 16-bit PCM) with their RMS level:
//   {type: "frame", pcm: Int16Array, level: 0..1, flushed: bool}
// A {type: "flush"} message posts what is buffered at once (flushed: true), so the end of an
// utterance is sent before push-to-talk is released.
"use strict";

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 1600; // 100 ms at 16 kHz

class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample
    this.acc = 0;
    this.sum = 0;
    this.count = 0;
    this.last = 0;
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.squares = 0;
    this.port.onmessage = (ev) => {
      if (ev.data && ev.data.type === "flush") this.post(true);
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input.length) return true;
    const channels = input.length;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      this.sum += x / channels;
      this.count += 1;
      this.acc += 1;
      while (this.acc >= this.ratio) { // usually once; more often below 16 kHz (upsampling)
        this.acc -= this.ratio;
        if (this.count) {
          this.last = this.sum / this.count;
          this.sum = 0;
          this.count = 0;
        }
        this.push(this.last);
      }
    }
    return true;
  }

  push(sample) {
    const clamped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    this.squares += clamped * clamped;
    if (this.filled === FRAME_SAMPLES) this.post(false);
  }

  post(flushed) {
    const pcm = this.frame.slice(0, this.filled);
    const level = this.filled ? Math.sqrt(this.squares / this.filled) : 0;
    this.filled = 0;
    this.squares = 0;
    this.port.postMessage({type: "frame", pcm, level, flushed}, [pcm.buffer]);
  }
}

registerProcessor("mic-capture", MicCapture);
