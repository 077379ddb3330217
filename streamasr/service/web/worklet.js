// AudioWorklet processor for the streamasr demo page: collects microphone samples (mono float32 at
// the AudioContext's rate) into chunks of `chunkSamples` and posts each one to the page, which sends
// it as a binary pcm_f32le frame. On the message "flush" it posts what it holds, then "flushed".
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.size = opts.chunkSamples || Math.round(sampleRate / 10);
    this.buffer = new Float32Array(this.size);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage("flushed");
      }
    };
  }

  post() {
    if (this.filled === 0) return;
    const chunk = this.buffer.slice(0, this.filled);
    this.port.postMessage(chunk, [chunk.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const samples = channels[0];  // first channel: the page asks for mono
      let offset = 0;
      while (offset < samples.length) {
        const n = Math.min(samples.length - offset, this.size - this.filled);
        this.buffer.set(samples.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.size) this.post();
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
