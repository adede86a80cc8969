/* connection.js — the one WebSocket to /ws: connect, say hello, keep it alive
 * with a ping every 20 s, notice a dead link, and reconnect by itself with
 * exponential backoff and jitter. It knows nothing about rooms; it reports
 * what happens as events:
 *   state    {state: 'connecting'|'online'|'offline'|'refused', retryInMs?}
 *   welcome  the server's welcome frame (the connection is now usable)
 *   frame    every other frame from the server
 *   refused  {code, message} the server refused our hello (close 1008):
 *            ask for another name or token, then call restart() */

const PING_EVERY_MS = 20000;
const PONG_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const CLOSE_POLICY = 1008;

export function socketUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/* Full jitter over an exponentially growing window, never below 250 ms. */
function backoffDelay(attempt) {
  const window = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.max(250, Math.round(window / 2 + Math.random() * window / 2));
}

export class Connection extends EventTarget {
  #url;
  #hello;
  #socket = null;
  #welcomed = false;
  #attempt = 0;
  #retryTimer = 0;
  #pingTimer = 0;
  #pongTimer = 0;
  #lastError = null;
  #refused = false;

  /* hello() returns the hello frame to send (it may change between connects). */
  constructor(url, hello) {
    super();
    this.#url = url;
    this.#hello = hello;
    window.addEventListener('online', () => this.#retryNow());
  }

  get ready() {
    return this.#welcomed;
  }

  start() {
    this.#refused = false;
    this.#open();
  }

  /* Drop the current socket (if any) and connect again at once, e.g. after
   * the display name changed. */
  restart() {
    this.#discard();
    this.#attempt = 0;
    this.start();
  }

  /* Closes the socket and stays away until start() (e.g. signed out). */
  stop() {
    this.#discard();
    this.#refused = true;
    this.#setState('idle');
  }

  /* Sends a frame if the connection is usable; false if it is not. */
  send(frame) {
    if (!this.#welcomed || this.#socket.readyState !== WebSocket.OPEN) return false;
    this.#socket.send(JSON.stringify(frame));
    return true;
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state, extra = {}) {
    this.#emit('state', { state, ...extra });
  }

  #open() {
    clearTimeout(this.#retryTimer);
    this.#setState('connecting');
    this.#lastError = null;
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    socket.addEventListener('open', () => socket.send(JSON.stringify(this.#hello())));
    socket.addEventListener('message', (event) => this.#onMessage(event));
    socket.addEventListener('close', (event) => this.#onClose(socket, event.code));
  }

  #onMessage(event) {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.type === 'pong') {
      clearTimeout(this.#pongTimer);
      return;
    }
    if (frame.type === 'welcome') {
      this.#welcomed = true;
      this.#attempt = 0;
      this.#startPings();
      this.#setState('online');
      this.#emit('welcome', frame);
      return;
    }
    if (frame.type === 'error' && !this.#welcomed) this.#lastError = frame;
    this.#emit('frame', frame);
  }

  #onClose(socket, code) {
    if (socket !== this.#socket) return;
    this.#discard();
    if (code === CLOSE_POLICY && this.#lastError) {
      this.#refused = true;
      this.#setState('refused');
      const { code, message } = this.#lastError;
      this.#emit('refused', { code, message: message || 'The server refused this name.' });
      return;
    }
    this.#scheduleRetry();
  }

  #scheduleRetry() {
    const delay = backoffDelay(this.#attempt++);
    this.#setState('offline', { retryInMs: delay });
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  #retryNow() {
    if (this.#socket || this.#refused) return;
    this.#open();
  }

  /* Forget the socket without waiting for a close handshake that a dead
   * link would never complete. */
  #discard() {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    clearTimeout(this.#retryTimer);
    this.#welcomed = false;
    const socket = this.#socket;
    this.#socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close();
  }

  #startPings() {
    clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
  }

  #ping() {
    if (!this.send({ type: 'ping', ref: String(Date.now()) })) return;
    clearTimeout(this.#pongTimer);
    this.#pongTimer = setTimeout(() => this.#onDeadLink(), PONG_TIMEOUT_MS);
  }

  #onDeadLink() {
    this.#discard();
    this.#scheduleRetry();
  }
}
