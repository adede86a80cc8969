/* validate.js — the PROTOCOL.md rules for room names, user names, tokens,
 * passwords (docs/PROTOCOL.md, "Accounts"), colours and message text, checked in the browser before anything goes on the wire.
 * Each check returns null when the value is fine, or a sentence saying why
 * it is not. */

const ROOM_MAX = 64;
const USER_MAX = 32;
const TEXT_MAX = 4000;
export const DEFAULT_ROOM = 'general';

const ROOM_CHARS = /^[A-Za-z0-9_.-]+$/;
const CONTROL_CHARS = /\p{Cc}/u;
const REFUSED_TEXT_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/; /* C0 but tab, LF, CR */

/* Length in Unicode code points, as the server counts it. */
function codePoints(text) {
  return [...text].length;
}

export function roomNameProblem(name) {
  if (name.length === 0) return 'Type a room name.';
  if (name.length > ROOM_MAX) return `Room names are at most ${ROOM_MAX} characters.`;
  if (!ROOM_CHARS.test(name)) return 'Room names use only letters, digits, "_", "." and "-".';
  if (name.startsWith('.')) return 'Room names cannot start with ".".';
  return null;
}

/* name is expected trimmed. */
export function userNameProblem(name) {
  if (name.length === 0) return 'Type a name.';
  if (codePoints(name) > USER_MAX) return `Names are at most ${USER_MAX} characters.`;
  if (CONTROL_CHARS.test(name)) return 'Names cannot contain control characters.';
  return null;
}

const TOKEN_MAX = 4096;
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/* A sign-in token is a JWT: three base64url parts. token is expected trimmed. */
export function tokenProblem(token) {
  if (token.length === 0) return 'Paste the token you were given.';
  if (token.length > TOKEN_MAX || !TOKEN_SHAPE.test(token)) return 'That is not a sign-in token: it has three parts separated by dots.';
  return null;
}

const PASSWORD_MIN = 8;
const PASSWORD_MAX = 256;

export function passwordProblem(password) {
  if (password.length === 0) return 'Type a password.';
  const length = codePoints(password);
  if (length < PASSWORD_MIN) return `Passwords have at least ${PASSWORD_MIN} characters.`;
  if (length > PASSWORD_MAX) return `Passwords have at most ${PASSWORD_MAX} characters.`;
  return null;
}

const DISPLAY_MAX = 32;

/* A profile's display name; expected trimmed. */
export function displayNameProblem(display) {
  if (display.length === 0) return 'Type a display name.';
  if (codePoints(display) > DISPLAY_MAX) return `Display names are at most ${DISPLAY_MAX} characters.`;
  if (CONTROL_CHARS.test(display)) return 'Display names cannot contain control characters.';
  return null;
}

export const COLOR_SHAPE = /^#[0-9a-fA-F]{6}$/;

/* text is expected trimmed. */
export function messageTextProblem(text) {
  if (text.length === 0) return 'The message is empty.';
  const length = codePoints(text);
  if (length > TEXT_MAX) return `Messages are at most ${TEXT_MAX} characters (this one has ${length}).`;
  if (REFUSED_TEXT_CHARS.test(text)) return 'The message contains a control character that cannot be sent.';
  return null;
}
