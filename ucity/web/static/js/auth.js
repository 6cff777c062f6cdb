// One sign-in for the whole page, in the top bar. When any API answers 401 the sign-in form shows
// (with the server's reason); the token typed is checked with GET /api/v1/auth/me, kept in
// sessionStorage only (api.js), and the page reloads its data (main.js `onSignedIn`). Signed in, the
// top bar shows who (name and role) and a sign-out button, which forgets the token and reloads the page
// (nothing read with the token stays on screen).
import { ApiError, getJSON, onUnauthorized, setToken, token } from './api.js';
import { onLangChange, t, tOr } from './i18n.js';

const ME = '/api/v1/auth/me';
let instance = null;

// Open the top bar's sign-in (a panel that needs a token points there: there is no second place to type one).
export function promptSignIn(reason = '', focus = true) { instance?.prompt(reason, focus); }

export class SignIn {
  constructor({ root, form, input, message, open, user, signOut, onSignedIn = () => {} }) {
    Object.assign(this, { root, form, input, message, openButton: open, user, signOutButton: signOut, onSignedIn });
    this.principal = null;
    this.reason = '';
    instance = this;
    form.addEventListener('submit', (event) => { event.preventDefault(); this.submit(); });
    open.addEventListener('click', () => this.prompt('', true));
    signOut.addEventListener('click', () => this.signOut());
    onUnauthorized((detail) => this.required(detail));
    onLangChange(() => this.render());
  }

  // Who the stored token is (if any); a token the server no longer knows is forgotten.
  async start() {
    if (!token()) { this.render(); return null; }
    try {
      this.principal = await getJSON(ME, null, { quiet: true });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) { setToken(''); this.reason = t('auth.expired'); this.show(true); }
    }
    this.render();
    return this.principal;
  }

  get signedIn() { return Boolean(this.principal && token()); }

  // Some API answered 401: the token is missing or no longer valid. The server's own words go in the
  // message's title; the message itself stays short.
  required(detail) {
    if (!token()) this.principal = null; // the server refused the token we had (api.js forgot it)
    this.reason = t('auth.required');
    this.message.title = detail || '';
    this.show(false);
  }

  // Open the form (from the button, or from a panel that needs a token); `focus` when the user asked.
  prompt(reason = '', focus = false) {
    if (reason) this.reason = reason;
    this.show(focus);
  }

  show(focus) {
    if (this.signedIn) return;
    this.open = true;
    this.render();
    if (focus) this.input.focus();
  }

  async submit() {
    const value = this.input.value.trim();
    if (!value) return;
    setToken(value);
    this.input.value = '';
    try {
      this.principal = await getJSON(ME, null, { quiet: true });
    } catch (error) {
      setToken('');
      this.principal = null;
      this.reason = error instanceof ApiError && error.status === 401 ? t('auth.rejected') : t('error.action', { detail: error.message });
      this.open = true;
      this.render();
      this.input.focus();
      return;
    }
    this.reason = '';
    this.open = false;
    this.render();
    this.onSignedIn(this.principal);
  }

  signOut() {
    setToken('');
    this.principal = null;
    location.reload();
  }

  render() {
    const signedIn = this.signedIn;
    this.root.dataset.state = signedIn ? 'signed-in' : this.open ? 'signing-in' : 'signed-out';
    this.form.hidden = signedIn || !this.open;
    this.openButton.hidden = signedIn || this.open;
    this.user.hidden = !signedIn;
    this.signOutButton.hidden = !signedIn;
    this.message.hidden = signedIn || !this.reason;
    this.message.textContent = this.reason;
    if (signedIn) {
      const p = this.principal;
      const role = tOr(`auth.role.${p.role}`, p.role);
      this.user.textContent = `${p.name || p.id} · ${role}${p.agency ? ` · ${p.agency}` : ''}`;
      this.user.title = t('auth.signedInAs', { name: p.name || p.id, role });
    }
  }
}
