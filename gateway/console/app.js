/* Kakehashi console: plain JavaScript over the admin API (gateway/README.md,
 * "Admin API"). The session is an HttpOnly cookie bound to the operator's
 * client certificate; every change sends the session's CSRF token in
 * X-KH-CSRF. Text from the API is only ever set as text (textContent),
 * never parsed as HTML. Japanese first; English on request. */
'use strict';

const T = {
  ja: {
    lang: 'English', login: 'ログイン', operator: 'オペレーター名', password: 'パスワード',
    logout: 'ログアウト', dashboard: 'ダッシュボード', pending: '保留中の照会',
    tenant: '団体', asked: '本日の照会', answered: '本日の回答', held: '本日の保留',
    waiting: '判断待ち', expiring: '24時間以内に期限', none: 'ありません',
    msg_id: 'メッセージID', sender: '照会元', procedure: '事務', items: '項目',
    local_id: '宛名番号', received: '受付', deadline: '期限', left: '残り',
    decision: '判断', approve: '承認', approve_some: '選んだ項目のみ承認', refuse: '拒否',
    reason: '理由', done: '判断しました', role: '役割', not_allowed: 'この役割では表示できません',
    hours: '時間', minutes: '分', cert_note: '証明書はブラウザーが提示するオペレーター証明書です。',
  },
  en: {
    lang: '日本語', login: 'Log in', operator: 'Operator name', password: 'Password',
    logout: 'Log out', dashboard: 'Dashboard', pending: 'Held queries',
    tenant: 'Tenant', asked: 'Asked today', answered: 'Answered today', held: 'Held today',
    waiting: 'Waiting for a decision', expiring: 'Deadline within 24 h', none: 'None',
    msg_id: 'Message ID', sender: 'Asker', procedure: 'Procedure', items: 'Items',
    local_id: 'Local ID', received: 'Received', deadline: 'Deadline', left: 'Left',
    decision: 'Decision', approve: 'Approve', approve_some: 'Approve the items ticked only',
    refuse: 'Refuse', reason: 'Reason', done: 'Decided', role: 'Role',
    not_allowed: 'Not available to this role', hours: 'h', minutes: 'min',
    cert_note: 'The certificate is the operator certificate your browser presents.',
  },
};
let lang = localStorage.getItem('kh.lang') === 'en' ? 'en' : 'ja';
let S = null; /* whoami: operator, role, tenants, csrf */

const $ = (id) => document.getElementById(id);
const t = (k) => T[lang][k] || T.en[k] || k;

/* el('td', {class: 'num'}, 'text', child...): an element; strings become text */
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'on') for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k ?? ''));
  return e;
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && S && S.csrf) headers['X-KH-CSRF'] = S.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let j;
  try { j = await r.json(); } catch (e) { j = { code: 'KH-5001', message: 'unreadable answer' }; }
  if (!r.ok) throw j;
  return j;
}

function showError(e) {
  const p = $('error');
  p.textContent = e && e.code ? `${e.code}: ${e.message}` : String(e);
  p.hidden = false;
}

function clearError() { $('error').hidden = true; }

function page(...kids) {
  const m = $('main');
  m.replaceChildren(...kids);
}

function table(cols, rows) {
  if (!rows.length) return el('p', {}, t('none'));
  return el('table', {},
    el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', {}, t(c))))),
    el('tbody', {}, ...rows));
}

const today = () => new Date(Date.now() + 9 * 3600e3).toISOString().slice(0, 10); /* Asia/Tokyo */

function left(s) {
  if (s === null || s === undefined) return '';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}${t('hours')} ${m}${t('minutes')}` : `${m}${t('minutes')}`;
}

/* ------------------------------------------------------------ pages */

function loginPage() {
  const name = el('input', { type: 'text', id: 'operator', autocomplete: 'username', required: true });
  const pw = el('input', { type: 'password', id: 'password', autocomplete: 'current-password', required: true });
  const form = el('form', { class: 'login', id: 'login-form' },
    el('label', {}, t('operator'), name), el('label', {}, t('password'), pw),
    el('button', { type: 'submit', id: 'login-button' }, t('login')),
    el('p', { class: 'small' }, t('cert_note')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    try {
      const r = await api('POST', '/admin/v1/login',
        { operator: name.value, password: pw.value, cookie: true });
      pw.value = '';
      S = r;
      await whoami();
      location.hash = '#/';
      route();
    } catch (e) { showError(e); }
  });
  page(el('h1', {}, t('login')), form);
}

async function tenantsOf() {
  if (S.tenants && S.tenants.length) return S.tenants;
  if (S.role !== 'platform_admin') return [];
  const u = await api('GET', '/admin/v1/usage');
  return u.tenants.map((x) => x.tenant);
}

async function dashboard() {
  const cards = el('div', { class: 'cards', id: 'cards' });
  page(el('h1', {}, t('dashboard')), cards);
  for (const org of await tenantsOf()) {
    const dl = el('dl', {});
    const add = (k, v, cls) => dl.append(el('dt', {}, t(k)), el('dd', { class: cls, id: `${k}-${org}` }, v));
    if (S.role !== 'responder') {
      try {
        const d = today();
        const u = await api('GET', `/admin/v1/tenants/${org}/usage?since=${d}&until=${d}`);
        add('asked', u.total.asked);
        add('answered', u.total.answered);
        add('held', u.total.held);
      } catch (e) { add('asked', e.code || '?'); }
    }
    const p = await api('GET', `/admin/v1/tenants/${org}/pending?limit=1000`);
    const soon = p.pending.filter((x) => x.seconds_left !== null && x.seconds_left < 86400).length;
    add('waiting', p.pending.length);
    add('expiring', soon, soon ? 'warn' : '');
    cards.append(el('div', { class: 'card', id: `card-${org}` },
      el('h2', {}, el('a', { href: `#/pending/${org}` }, `${t('tenant')} ${org}`)), dl));
  }
}

function decisionCell(org, row) {
  if (S.role !== 'responder') return el('td', {}, '');
  const items = row.items.map((it) =>
    el('label', {}, el('input', { type: 'checkbox', value: it, checked: true, class: 'item' }), it));
  const reason = el('input', { type: 'text', class: 'reason', placeholder: t('reason'), maxlength: 200 });
  const decide = async (decision, some) => {
    clearError();
    const body = { msg_id: row.msg_id, decision };
    if (reason.value) body.reason = reason.value;
    if (some) body.items = items.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
    try {
      await api('POST', `/admin/v1/tenants/${org}/decide`, body);
      td.replaceChildren(el('span', { class: 'ok' }, t('done')));
    } catch (e) { showError(e); }
  };
  const td = el('td', { class: 'decide' }, ...items, reason,
    el('button', { type: 'button', class: 'approve', on: { click: () => decide('approve', false) } }, t('approve')),
    el('button', { type: 'button', class: 'approve-some', on: { click: () => decide('approve', true) } }, t('approve_some')),
    el('button', { type: 'button', class: 'refuse', on: { click: () => decide('refuse', false) } }, t('refuse')));
  return td;
}

async function pendingPage(org) {
  const p = await api('GET', `/admin/v1/tenants/${org}/pending?limit=1000`);
  const rows = p.pending.map((r) => el('tr', { id: `held-${r.msg_id}` },
    el('td', { class: 'msg' }, r.msg_id), el('td', {}, r.sender), el('td', {}, r.procedure),
    el('td', {}, r.items.join(', ')), el('td', {}, r.local_id), el('td', {}, r.received_at),
    el('td', { class: r.seconds_left < 86400 ? 'warn' : '' }, left(r.seconds_left)),
    decisionCell(org, r)));
  page(el('h1', {}, `${t('pending')} — ${org}`),
    table(['msg_id', 'sender', 'procedure', 'items', 'local_id', 'received', 'left', 'decision'], rows));
}

/* ------------------------------------------------------------ frame */

async function whoami() {
  const w = await api('GET', '/admin/v1/whoami');
  S = w;
}

function frame() {
  $('lang').textContent = t('lang');
  $('logout').textContent = t('logout');
  $('logout').hidden = !S;
  $('who').textContent = S ? `${S.operator} (${S.role})` : '';
  const nav = $('nav');
  nav.replaceChildren();
  if (!S) return;
  nav.append(el('a', { href: '#/' }, t('dashboard')));
  for (const org of S.tenants || []) nav.append(el('a', { href: `#/pending/${org}` }, `${t('pending')} ${org}`));
}

async function route() {
  clearError();
  if (!S) {
    try { await whoami(); } catch (e) { S = null; }
  }
  frame();
  if (!S) { loginPage(); return; }
  const h = location.hash.replace(/^#/, '') || '/';
  const m = h.match(/^\/pending\/([0-9A-Z]{6})$/);
  try {
    if (m) await pendingPage(m[1]);
    else await dashboard();
  } catch (e) { showError(e); }
}

document.addEventListener('DOMContentLoaded', () => {
  document.documentElement.lang = lang;
  $('lang').addEventListener('click', () => {
    lang = lang === 'ja' ? 'en' : 'ja';
    localStorage.setItem('kh.lang', lang);
    document.documentElement.lang = lang;
    route();
  });
  $('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/admin/v1/logout', {});
    } catch (e) {
      /* still logged in unless the session had already ended: say so, stay */
      if (e.code !== 'KH-6001' && e.code !== 'KH-6004') { showError(e); return; }
    }
    S = null;
    location.hash = '#/';
    route();
  });
  window.addEventListener('hashchange', route);
  route();
});
