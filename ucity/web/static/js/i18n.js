// Message catalogue and language switch. Every visible string comes from messages/<lang>.json,
// shipped inside the page config; elements carry data-i18n (text) or data-i18n-attr ("attr:key;...").
const config = JSON.parse(document.getElementById('ucity-config').textContent);
const listeners = [];
let lang = config.lang;

export function currentLang() { return lang; }

export function t(key, vars = {}) {
  const text = config.messages[lang][key] ?? config.messages.ko[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

// The text of `key`, or `fallback` when the catalogue has no such key (values from an API).
export function tOr(key, fallback) {
  return key in config.messages[lang] || key in config.messages.ko ? t(key) : fallback;
}

// A LanguageProperty-like {ko, en} value in the current language.
export function pick(value) {
  if (value == null) return '';
  if (typeof value === 'string') return value;
  return value[lang] ?? value.ko ?? value.en ?? Object.values(value)[0] ?? '';
}

export function apply(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':');
      el.setAttribute(attr, t(key));
    }
  }
}

export function onLangChange(fn) { listeners.push(fn); }

export function setLang(next) {
  if (!(next in config.messages) || next === lang) return;
  lang = next;
  document.documentElement.lang = next;
  document.cookie = `ucity_lang=${next}; path=/; max-age=31536000; samesite=lax`;
  for (const button of document.querySelectorAll('[data-lang]')) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === next));
  }
  apply();
  for (const fn of listeners) fn(next);
}

export { config };
