// One sign-in for the whole page, in the top bar. When any API answers 401 the sign-in form shows
// (with the server's reason in its tooltip); the token typed is checked with GET /api/v1/auth/me, kept in
// sessionStorage only (api.js), and the page reloads its data (main.js `onSignedIn`). Signed in, the
// top bar shows who (name and role) and a sign-out button, which forgets the token and reloads the page
// (nothing read with the token stays on screen). A 401 for the signed-in token (revoked, or unknown to the
// server now) does the same as signing out, and the reloaded page says the token is no longer valid.
import { ApiError, claimActor, getJSON, localText, onUnauthorized, setActor, setToken, tenant, token } from './api.js';
import { onLangChange, t, tOr } from './i18n.js';

const ME = '/api/v1/auth/me';
const NOTICE = 'ucity.signin.notice'; // sessionStorage: why the page was reloaded ('expired'); never a token
let instance = null;

// Open the top bar's sign-in (a panel that needs a token points there: there is no second place to type one).
export function promptSignIn(reason = '', focus = true) { instance?.prompt(reason, focus); }

// May the signed-in principal do this? (its `permissions` from /auth/me). Not signed in: the page does not
// know, and the server decides (with sign-in off the alarm actions need no token). Used to hide the actions a
// role cannot take (a reader's acknowledge buttons, QA7), never as the check itself: the server makes that.
export function can(permission) {
  const p = instance?.signedIn ? instance.principal : null;
  return !p || !Array.isArray(p.permissions) || p.permissions.includes(permission);
}

// The dashboard reads the platform's data (data:read): a token without it (an agency's, a 112/119 terminal's)
// has nothing to see here.
export function mayUseDashboard() { return can('data:read'); }

// The top bar's message for a 403 from /auth/me: the server's detail, and for a token of one tenant on a page
// opened without `?tenant=` (the problem's `tokenTenant`) where to go instead.
function refusal(error) {
  const detail = error.message;
  const other = error.problem?.tokenTenant; // a token of one tenant: the server names it (reason token-tenant)
  if (tenant || !other) return { key: 'auth.refused', vars: { detail } };
  return { key: 'auth.otherTenant', vars: { detail, tenant: other } };
}

export class SignIn {
  constructor({ root, form, input, message, open, user, signOut, onSignedIn = () => {}, onSignedOut = () => {} }) {
    Object.assign(this, { root, form, input, message, openButton: open, user, signOutButton: signOut, onSignedIn, onSignedOut });
    this.principal = null;
    this.reason = null; // {key, vars}: shown in the current language
    this.detail = ''; // the server's own words (the message's tooltip)
    this.pending = ''; // the token being checked by submit()
    instance = this;
    form.addEventListener('submit', (event) => { event.preventDefault(); this.submit(); });
    open.addEventListener('click', () => this.prompt('', true));
    signOut.addEventListener('click', () => this.signOut());
    onUnauthorized((detail, sent) => this.required(detail, sent));
    onLangChange(() => this.render());
  }

  // Who the stored token is (if any); a token the server no longer knows is forgotten.
  async start() {
    if (sessionStorage.getItem(NOTICE) === 'expired') {
      sessionStorage.removeItem(NOTICE);
      this.reason = { key: 'auth.expired' };
      this.open = true;
    }
    if (!token()) { this.render(); return null; }
    try {
      this.principal = await getJSON(ME, null, { quiet: true });
      claimActor(this.principal.id);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        setToken('');
        setActor('');
        this.reason = { key: 'auth.expired' };
        this.detail = error.message;
        this.show(true);
      }
    }
    this.render();
    return this.principal;
  }

  get signedIn() { return Boolean(this.principal && token()); }

  // Some API answered 401 (`sent`: the token it carried). The server's own words go in the message's
  // tooltip; the message itself stays short, and a more telling one already shown (an unknown token, a
  // token of another tenant, an expired one) is not replaced by "sign-in required".
  required(detail, sent = '') {
    if (this.pending) return; // a token is being checked: its own answer decides
    if (sent !== token()) return; // an answer for a token no longer in use (or sent before sign-in)
    if (sent && this.principal) { this.expire(); return; } // the signed-in token was refused: revoked
    if (sent) setToken(''); // a stored token never confirmed
    this.principal = null;
    if (!this.reason || this.reason.key === 'auth.required') {
      this.reason = { key: 'auth.required' };
      this.detail = detail || '';
    }
    this.show(false);
  }

  // The signed-in token is no longer valid: as signing out (the stream stops, the page reloads, so
  // nothing read with the token stays on screen), and the reloaded page says why.
  expire() {
    setToken('');
    setActor(''); // the operator name goes with the token (QA16 F4)
    this.principal = null;
    sessionStorage.setItem(NOTICE, 'expired');
    this.onSignedOut();
    location.reload();
  }

  // Open the form (from the button, or from a panel that needs a token); `focus` when the user asked.
  prompt(reason = '', focus = false) {
    if (reason) this.reason = { key: reason };
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
    this.pending = value;
    this.input.value = '';
    try {
      this.principal = await getJSON(ME, null, { quiet: true });
    } catch (error) {
      setToken('');
      this.principal = null;
      if (error instanceof ApiError && error.status === 401) this.reason = { key: 'auth.rejected' };
      else if (error instanceof ApiError && error.status === 403) this.reason = refusal(error);
      else this.reason = { key: 'error.action', vars: { detail: error.message } };
      this.detail = error.message || '';
      this.open = true;
      this.render();
      this.input.focus();
      return;
    } finally {
      this.pending = '';
    }
    claimActor(this.principal.id); // a name typed under another principal is not theirs
    this.reason = null;
    this.detail = '';
    this.open = false;
    this.render();
    this.onSignedIn(this.principal);
  }

  signOut() {
    setToken('');
    setActor(''); // the next operator at this browser starts with an empty name (QA16 F4)
    this.principal = null;
    this.onSignedOut();
    location.reload();
  }

  render() {
    const signedIn = this.signedIn;
    this.root.dataset.state = signedIn ? 'signed-in' : this.open ? 'signing-in' : 'signed-out';
    this.form.hidden = signedIn || !this.open;
    this.openButton.hidden = signedIn || this.open;
    this.user.hidden = !signedIn;
    this.signOutButton.hidden = !signedIn;
    const shown = !signedIn && this.reason;
    this.message.hidden = !shown;
    // the server's "한국어 / English" detail: the current language's part (the whole words stay in the tooltip)
    const vars = shown && this.reason.vars?.detail ? { ...this.reason.vars, detail: localText(this.reason.vars.detail) } : this.reason?.vars;
    this.message.textContent = shown ? t(this.reason.key, vars) : '';
    this.message.dataset.reason = shown ? this.reason.key : '';
    if (shown && this.detail) this.message.title = this.detail; else this.message.removeAttribute('title');
    if (signedIn) {
      const p = this.principal;
      const role = tOr(`auth.role.${p.role}`, p.role);
      this.user.textContent = `${p.name || p.id} · ${role}${p.agency ? ` · ${p.agency}` : ''}`;
      this.user.title = t('auth.signedInAs', { name: p.name || p.id, role });
    }
  }
}
