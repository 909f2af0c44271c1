/* Kakehashi console: plain JavaScript over the admin API (gateway/README.md,
 * "Admin API"). The session is an HttpOnly cookie bound to the operator's
 * client certificate; every change sends the session's CSRF token in
 * X-KH-CSRF. Text from the API is only ever set as text (textContent),
 * never parsed as HTML. Japanese first; English on request. Each page shows
 * only what the operator's role may use (PAGES below mirrors the API's
 * table); the gateway checks every call again whatever the page shows. */
'use strict';

const T = {
  ja: {
    lang: 'English', login: 'ログイン', operator: 'オペレーター名', password: 'パスワード',
    logout: 'ログアウト', dashboard: 'ダッシュボード', pending: '保留中の照会',
    tenant: '団体', asked: '本日の照会', answered: '本日の回答', held: '本日の保留',
    waiting: '判断待ち', expiring: '24時間以内に期限', none: 'ありません',
    undelivered: '本日の未達回答', flags_active: '有効な保留・不開示',
    msg_id: 'メッセージID', sender: '照会元', procedure: '事務', items: '項目',
    local_id: '宛名番号', received: '受付', deadline: '期限', left: '残り',
    decision: '判断', approve: '承認', approve_some: '選んだ項目のみ承認', refuse: '拒否',
    reason: '理由', done: '判断しました', role: '役割', not_allowed: 'この役割では表示できません',
    days: '日', hours: '時間', minutes: '分', cert_note: '証明書はブラウザーが提示するオペレーター証明書です。',
    flags: '保留・不開示', kind: '種別', hold: '保留', nondisclosure: '不開示',
    item_code: '項目コード', valid_from: '開始日', valid_to: '終了日', state: '状態',
    add: '追加', revoke: '解除', revoked: '解除済み', active: '有効', inactive: '無効',
    id: 'ID', created_by: '登録者', queries: '照会の検索', handle: 'ハンドル',
    since: '開始日', until: '終了日', search: '検索', provider: '照会先', result: '結果',
    code: 'コード', created: '作成', updated: '更新', staff: '職員', system: '業務システム',
    audit: '監査ログ', at: '日時', action: '操作', target: '対象', detail: '詳細', outcome: '結果',
    registry: '職員・職責・業務システム', staff_id: '職員ID', display_name: '表示名',
    roles: '職責', role_code: '職責コード', name: '名称', procedures: '事務',
    staff_current: '現職員数', assignments: '職責の割当て', current: '現在',
    systems: '業務システム', permissions: '権限', system_id: 'システムID',
    import_csv: 'CSV取込み', file: 'ファイル', what: '対象', check_only: '確認のみ',
    do_import: '取り込む', export_csv: 'CSV出力', import_ok: '取り込みました',
    check_ok: '問題ありません（まだ取り込んでいません）', import_refused: '取り込みませんでした',
    line: '行', column: '列', message: '内容', lines: '行数',
    usage: '利用状況', day: '日', download_csv: 'CSVをダウンロード', show: '表示',
    operators: 'オペレーター', tenants: '団体', failed_logins: '失敗回数',
    locked_until: 'ロック期限', disable: '無効にする', enable: '有効にする', unlock: 'ロック解除',
    any: 'すべて', legend_asked: '照会', legend_answered: '回答',
    u_asked: '照会', u_answered: '回答', u_held: '保留', u_answered_refused: '拒否',
    u_answered_expired: '期限切れ', u_answered_undelivered: '未達', u_rows_registered: '副本登録行',
    bulk: '一括登録', uploads: '受付中・最近のアップロード', files_applied: '適用済みファイル',
    upload_id: 'アップロードID', file_name: 'ファイル名', mode: '方式', as_of: '基準日',
    records: 'レコード', bad_records: '不正レコード', persons: '人数', report: 'レポート',
    show_report: 'レポートを表示', shown_rest_in_csv: '行を表示（すべてはCSVに）',
    chain_unsigned: '署名待ちの記録', cert_days: '証明書の残り日数（最短）',
    settings: '運用設定', hold_deadline: '保留の判断期限（秒）', save: '保存', saved: '保存しました',
    maintenance: 'メンテナンス', maint_on: 'メンテナンス中にする', maint_off: 'メンテナンスを終える',
    maint_none: '通常運用中', set_by: '設定者', set_at: '設定日時', gateway: 'ゲートウェイ',
    directory: 'ディレクトリ', refresh: '今すぐ更新', diagnose: '接続診断', run: '実行',
    check: '確認', status: '状態', issued_at: '発行日時', legal_basis_version: '法令根拠表の版',
    installs: '取込み回数', last_error: '最後のエラー', organisations: '団体', changed: '新しい版を取り込みました',
    unchanged: '新しい版はありません', field: '項目', applied_at: '適用日時', started_at: '開始',
    account: '自分のアカウント', current_password: '現在のパスワード', new_password: '新しいパスワード',
    new_password_again: '新しいパスワード（確認）', change_password: 'パスワードを変更',
    password_changed: 'パスワードを変更しました（他のセッションは終了しました：', mismatch: '新しいパスワードが一致しません',
    sessions: 'セッション', session: 'セッション', last_seen: '最終操作', ends_at: '終了予定',
    this_session: 'このセッション', end: '終了', end_all: 'すべて終了', add_operator: 'オペレーターを追加',
    initial_password: '初期パスワード', reset_password: 'パスワード再設定',
    password_reset: 'パスワードを再設定しました（セッションはすべて終了）', added: '追加しました',
    pw_rule: '12バイト以上', ended: '終了しました',
    edit_one: '1件ずつ登録・変更', procedures_list: '事務コード（カンマ区切り）', valid_to_end: '終了日（その日から無効）',
    permissions_list: '権限（操作:範囲 をカンマ区切り、例 query:JT001, linkcode）',
    database: 'データベース', added_at: '追加日時', retired_at: '廃止日時', hosted: '収容中', retired: '廃止',
    last_change: '最後の変更', tenants_note: '団体の追加・廃止は設定ファイルの tenant 行を編集して SIGHUP を送ります（gateway/README.md）。',
  },
  en: {
    lang: '日本語', login: 'Log in', operator: 'Operator name', password: 'Password',
    logout: 'Log out', dashboard: 'Dashboard', pending: 'Held queries',
    tenant: 'Tenant', asked: 'Asked today', answered: 'Answered today', held: 'Held today',
    waiting: 'Waiting for a decision', expiring: 'Deadline within 24 h', none: 'None',
    undelivered: 'Undelivered answers today', flags_active: 'Active holds and non-disclosures',
    msg_id: 'Message ID', sender: 'Asker', procedure: 'Procedure', items: 'Items',
    local_id: 'Local ID', received: 'Received', deadline: 'Deadline', left: 'Left',
    decision: 'Decision', approve: 'Approve', approve_some: 'Approve the items ticked only',
    refuse: 'Refuse', reason: 'Reason', done: 'Decided', role: 'Role',
    not_allowed: 'Not available to this role', days: 'd', hours: 'h', minutes: 'min',
    cert_note: 'The certificate is the operator certificate your browser presents.',
    flags: 'Holds and non-disclosure', kind: 'Kind', hold: 'Hold', nondisclosure: 'Non-disclosure',
    item_code: 'Item code', valid_from: 'From', valid_to: 'To', state: 'State',
    add: 'Add', revoke: 'Revoke', revoked: 'Revoked', active: 'Active', inactive: 'Inactive',
    id: 'ID', created_by: 'By', queries: 'Query look-up', handle: 'Handle',
    since: 'Since', until: 'Until', search: 'Search', provider: 'Provider', result: 'Result',
    code: 'Code', created: 'Created', updated: 'Updated', staff: 'Staff', system: 'System',
    audit: 'Audit log', at: 'At', action: 'Action', target: 'Target', detail: 'Detail', outcome: 'Outcome',
    registry: 'Staff, roles and systems', staff_id: 'Staff ID', display_name: 'Display name',
    roles: 'Job roles', role_code: 'Role code', name: 'Name', procedures: 'Procedures',
    staff_current: 'Staff now', assignments: 'Role assignments', current: 'Current',
    systems: 'Business systems', permissions: 'Permissions', system_id: 'System ID',
    import_csv: 'CSV import', file: 'File', what: 'Of', check_only: 'Check only',
    do_import: 'Import', export_csv: 'CSV export', import_ok: 'Imported',
    check_ok: 'No problem found (nothing imported yet)', import_refused: 'Nothing was imported',
    line: 'Line', column: 'Column', message: 'Message', lines: 'Lines',
    usage: 'Usage', day: 'Day', download_csv: 'Download CSV', show: 'Show',
    operators: 'Operators', tenants: 'Tenants', failed_logins: 'Failed logins',
    locked_until: 'Locked until', disable: 'Disable', enable: 'Enable', unlock: 'Unlock',
    any: 'Any', legend_asked: 'Asked', legend_answered: 'Answered',
    u_asked: 'Asked', u_answered: 'Answered', u_held: 'Held', u_answered_refused: 'Refused',
    u_answered_expired: 'Expired', u_answered_undelivered: 'Undelivered', u_rows_registered: 'Rows registered',
    bulk: 'Bulk files', uploads: 'Uploads in progress or recent', files_applied: 'Files applied',
    upload_id: 'Upload ID', file_name: 'File name', mode: 'Mode', as_of: 'As of',
    records: 'Records', bad_records: 'Bad records', persons: 'Persons', report: 'Report',
    show_report: 'Show the report', shown_rest_in_csv: 'lines shown (all of them in the CSV)',
    chain_unsigned: 'Records not signed yet', cert_days: 'Certificate days left (least)',
    settings: 'Settings', hold_deadline: 'Deadline of held queries (s)', save: 'Save', saved: 'Saved',
    maintenance: 'Maintenance', maint_on: 'Start maintenance', maint_off: 'End maintenance',
    maint_none: 'In normal service', set_by: 'Set by', set_at: 'Set at', gateway: 'Gateway',
    directory: 'Directory', refresh: 'Refresh now', diagnose: 'Connectivity check', run: 'Run',
    check: 'Check', status: 'Status', issued_at: 'Issued', legal_basis_version: 'Legal-basis version',
    installs: 'Installs', last_error: 'Last error', organisations: 'Organisations',
    changed: 'A newer version was installed', unchanged: 'Nothing newer', field: 'Field', applied_at: 'Applied', started_at: 'Started',
    account: 'My account', current_password: 'Current password', new_password: 'New password',
    new_password_again: 'New password again', change_password: 'Change password',
    password_changed: 'Password changed (other sessions ended: ', mismatch: 'The new passwords differ',
    sessions: 'Sessions', session: 'Session', last_seen: 'Last seen', ends_at: 'Ends',
    this_session: 'This session', end: 'End', end_all: 'End all', add_operator: 'Add an operator',
    initial_password: 'Initial password', reset_password: 'Reset password',
    password_reset: 'Password reset (every session ended)', added: 'Added',
    pw_rule: '12 bytes or more', ended: 'Ended',
    edit_one: 'Add or change one record', procedures_list: 'Procedure codes (comma-separated)',
    valid_to_end: 'To (the first day it no longer holds)',
    permissions_list: 'Permissions (operation:scope, comma-separated, e.g. query:JT001, linkcode)',
    database: 'Database', added_at: 'Added', retired_at: 'Retired', hosted: 'Hosted', retired: 'Retired',
    last_change: 'Last change', tenants_note: 'Tenants are added and retired by editing the tenant lines of the configuration and sending SIGHUP (gateway/README.md).',
  },
};

/* The roles each page is for: the same as the admin API's table (README). */
const PA = 'platform_admin', TA = 'tenant_admin', RS = 'responder', AU = 'auditor';
const PAGES = {
  pending: [PA, TA, RS, AU],
  flags: [PA, TA],
  queries: [PA, TA, AU],
  audit: [PA, TA, AU],
  registry: [PA, TA, AU],
  bulk: [PA, TA, AU],
  usage: [PA, TA, AU],
  settings: [PA, TA, RS, AU],
};
const may = (pg) => S && (PAGES[pg] || []).includes(S.role);
const STATUS = [PA, TA, AU]; /* GET …/status: record chains, certificates */

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

/* api(method, path, body[, ctype]): a JSON object body, or raw bytes/text
 * with their content type (CSV); answers the parsed JSON, throws the
 * refusal ({code, message, ...}). */
async function api(method, path, body, ctype) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = ctype || 'application/json';
  if (method !== 'GET' && S && S.csrf) headers['X-KH-CSRF'] = S.csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : ctype ? body : JSON.stringify(body),
  });
  let j;
  try { j = await r.json(); } catch (e) { j = { code: 'KH-5001', message: 'unreadable answer' }; }
  if (!r.ok) throw j;
  return j;
}

/* A file for the operator to keep: bytes the page has, offered as a download. */
function download(name, blob) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

async function downloadFrom(path, name) {
  const r = await fetch(path, { credentials: 'same-origin' });
  if (!r.ok) throw await r.json();
  download(name, await r.blob());
}

/* A refusal shown on the page. One that says the session is gone (ended
 * elsewhere, expired) takes the operator to the login page first. */
function showError(e) {
  if (S && e && (e.code === 'KH-6001' || e.code === 'KH-6004')) {
    S = null;
    route().then(() => showError(e));
    return;
  }
  const p = $('error');
  p.textContent = e && e.code ? `${e.code}: ${e.message}` : e && e.message ? e.message : String(e);
  p.hidden = false;
}

function clearError() { $('error').hidden = true; }

function page(...kids) {
  const m = $('main');
  m.replaceChildren(...kids);
}

function table(cols, rows, id) {
  if (!rows.length) return el('p', { id, class: 'empty' }, t('none'));
  return el('table', { id },
    el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', {}, t(c))))),
    el('tbody', {}, ...rows));
}

/* rows of plain cells: each value as text (objects as compact JSON) */
function cells(obj, keys) {
  return keys.map((k) => {
    const v = obj[k];
    const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
    return el('td', { class: `c-${k}` }, s);
  });
}

const today = () => new Date(Date.now() + 9 * 3600e3).toISOString().slice(0, 10); /* Asia/Tokyo */

function left(s) {
  if (s === null || s === undefined) return '';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}${t('days')} ${h}${t('hours')}`;
  return h ? `${h}${t('hours')} ${m}${t('minutes')}` : `${m}${t('minutes')}`;
}

function field(label, input) { return el('label', {}, t(label), input); }

/* a form whose fields become query parameters (the empty ones left out) */
function query(form) {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (String(v).trim() !== '') p.append(k, String(v).trim());
  const s = p.toString();
  return s ? `?${s}` : '';
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
  return [];
}

async function dashboard() {
  const cards = el('div', { class: 'cards', id: 'cards' });
  page(el('h1', {}, t('dashboard')), cards);
  for (const org of await tenantsOf()) {
    const dl = el('dl', {});
    const add = (k, v, cls) => dl.append(el('dt', {}, t(k)), el('dd', { class: cls, id: `${k}-${org}` }, v));
    if (may('usage')) {
      try {
        const d = today();
        const u = await api('GET', `/admin/v1/tenants/${org}/usage?since=${d}&until=${d}`);
        add('asked', u.total.asked);
        add('answered', u.total.answered);
        add('held', u.total.held);
        add('undelivered', u.total.answered_undelivered, u.total.answered_undelivered ? 'warn' : '');
      } catch (e) { add('asked', e.code || '?', 'warn'); }
    }
    if (STATUS.includes(S.role)) {
      try {
        const st = await api('GET', `/admin/v1/tenants/${org}/status`);
        const waiting = st.chains.reduce((a, c) => a + c.unsigned, 0);
        add('chain_unsigned', waiting, waiting > 1000 ? 'warn' : '');
        const days = Math.min(...st.certificates.filter((c) => c.seconds_left !== undefined)
          .map((c) => Math.floor(c.seconds_left / 86400)));
        add('cert_days', days, days < 30 ? 'warn' : '');
      } catch (e) { add('chain_unsigned', e.code || '?', 'warn'); }
    }
    /* each figure on its own: one that cannot be read says its code, the rest stand */
    if (may('pending')) {
      try {
        const p = await api('GET', `/admin/v1/tenants/${org}/pending?limit=1000`);
        const soon = p.pending.filter((x) => x.seconds_left !== null && x.seconds_left < 86400).length;
        add('waiting', p.pending.length);
        add('expiring', soon, soon ? 'warn' : '');
      } catch (e) { add('waiting', e.code || '?', 'warn'); }
    }
    if (may('flags')) {
      try {
        const f = await api('GET', `/admin/v1/tenants/${org}/flags?active=true&limit=1000`);
        add('flags_active', f.flags.length);
      } catch (e) { add('flags_active', e.code || '?', 'warn'); }
    }
    const links = Object.keys(PAGES).filter(may).map((pg) => el('a', { href: `#/t/${org}/${pg}` }, t(pg)));
    cards.append(el('div', { class: 'card', id: `card-${org}` },
      el('h2', {}, `${t('tenant')} ${org}`), dl, el('p', { class: 'links' }, ...links)));
  }
}

function decisionCell(org, row) {
  if (S.role !== RS || row.state !== 'pending') return el('td', {}, row.state || '');
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
    table(['msg_id', 'sender', 'procedure', 'items', 'local_id', 'received', 'left', 'decision'], rows, 'pending'));
}

async function flagsPage(org) {
  const f = await api('GET', `/admin/v1/tenants/${org}/flags?limit=1000`);
  const rows = f.flags.map((x) => el('tr', { id: `flag-${x.id}` },
    el('td', {}, x.id), el('td', {}, t(x.kind)), ...cells(x, ['local_id', 'item_code', 'procedure', 'reason', 'valid_from', 'valid_to', 'created_by']),
    el('td', {}, x.revoked_at ? t('revoked') : t(x.active ? 'active' : 'inactive'), ' ', x.revoked_at ? '' : el('button', {
      type: 'button', class: 'revoke',
      on: {
        click: async () => {
          clearError();
          try { await api('POST', `/admin/v1/tenants/${org}/flags/${x.id}/revoke`, {}); route(); } catch (e) { showError(e); }
        },
      },
    }, t('revoke')))));
  const kind = el('select', { name: 'kind', id: 'flag-kind' },
    el('option', { value: 'hold' }, t('hold')), el('option', { value: 'nondisclosure' }, t('nondisclosure')));
  const inp = (name, extra) => el('input', { type: 'text', name, id: `flag-${name}`, ...extra });
  const form = el('form', { id: 'flag-form', class: 'inline' },
    field('kind', kind), field('local_id', inp('local_id', { maxlength: 15 })),
    field('item_code', inp('item_code', { maxlength: 15 })), field('procedure', inp('procedure', { maxlength: 15 })),
    field('reason', inp('reason', { maxlength: 200, required: true })),
    field('valid_to', inp('valid_to', { placeholder: 'YYYY-MM-DD', maxlength: 10 })),
    el('button', { type: 'submit', id: 'flag-add' }, t('add')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    const body = {};
    for (const [k, v] of new FormData(form)) if (String(v).trim() !== '') body[k] = String(v).trim();
    try { await api('POST', `/admin/v1/tenants/${org}/flags`, body); route(); } catch (e) { showError(e); }
  });
  page(el('h1', {}, `${t('flags')} — ${org}`), form,
    table(['id', 'kind', 'local_id', 'item_code', 'procedure', 'reason', 'valid_from', 'valid_to', 'created_by', 'state'], rows, 'flags'));
}

/* a search form over a listing: the form's fields are the API's parameters */
/* latest(f): f's answers, but only the one of the last call is shown (a
 * slow earlier search never replaces a later one) */
function latest(f) {
  let n = 0;
  return async (...a) => {
    const mine = ++n;
    const x = await f(...a);
    return mine === n ? x : null;
  };
}

function searchPage(title, form, run) {
  const out = el('div', { id: 'results' });
  const ask = latest(run);
  const show = async (q) => {
    const x = await ask(q);
    if (x) out.replaceChildren(x);
  };
  form.append(el('button', { type: 'submit', id: 'search' }, t('search')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearError();
    show(query(form)).catch(showError);
  });
  page(el('h1', {}, title), form, out);
  return show('');
}

const STATES = ['SENT', 'PENDING', 'ANSWERED', 'REFUSED', 'EXPIRED', 'FAILED', 'TIMED_OUT'];

async function queriesPage(org) {
  const form = el('form', { id: 'query-form', class: 'inline' },
    field('handle', el('input', { type: 'text', name: 'msg_id', id: 'q-handle', maxlength: 32, size: 34 })),
    field('state', el('select', { name: 'state', id: 'q-state' }, el('option', { value: '' }, t('any')),
      ...STATES.map((s) => el('option', { value: s.toLowerCase() }, s)))),
    field('since', el('input', { type: 'date', name: 'since', id: 'q-since' })),
    field('until', el('input', { type: 'date', name: 'until', id: 'q-until' })));
  const cols = ['msg_id', 'created_at', 'system_id', 'staff_id', 'procedure', 'provider', 'items', 'local_id', 'state', 'result', 'code'];
  await searchPage(`${t('queries')} — ${org}`, form, async (q) => {
    const r = await api('GET', `/admin/v1/tenants/${org}/queries${q}`);
    return table(cols.map((c) => ({ created_at: 'created', system_id: 'system', staff_id: 'staff' })[c] || c),
      r.queries.map((x) => el('tr', {}, ...cells(x, cols))), 'queries');
  });
}

async function auditPage(org) {
  const form = el('form', { id: 'audit-form', class: 'inline' },
    field('outcome', el('select', { name: 'outcome', id: 'a-outcome' }, el('option', { value: '' }, t('any')),
      el('option', { value: 'ok' }, 'ok'), el('option', { value: 'refused' }, 'refused'))),
    field('since', el('input', { type: 'date', name: 'since', id: 'a-since' })),
    field('until', el('input', { type: 'date', name: 'until', id: 'a-until' })));
  const cols = ['id', 'at', 'operator', 'action', 'target', 'outcome', 'code', 'detail'];
  await searchPage(`${t('audit')} — ${org}`, form, async (q) => {
    const r = await api('GET', `/admin/v1/tenants/${org}/audit${q}`);
    return table(cols, r.audit.map((x) => el('tr', {}, ...cells(x, cols))), 'audit');
  });
}

function importForm(org) {
  const what = el('select', { id: 'import-what' },
    el('option', { value: 'staff' }, t('staff')), el('option', { value: 'assignments' }, t('assignments')));
  const file = el('input', { type: 'file', id: 'import-file', accept: '.csv,text/csv', required: true });
  const report = el('div', { id: 'import-report' });
  const send = async (check) => {
    clearError();
    report.replaceChildren();
    if (!file.files.length) return;
    const bytes = await file.files[0].arrayBuffer();
    try {
      const r = await api('POST', `/admin/v1/tenants/${org}/${what.value}/import${check ? '?check=true' : ''}`,
        bytes, 'text/csv');
      const i = r.import;
      report.append(el('p', { class: 'ok', id: 'import-ok' }, check ? t('check_ok') : t('import_ok'),
        ` — ${t('lines')} ${i.lines}: ${t('created')} ${i.created}, ${t('updated')} ${i.updated}`));
      if (!check) await registryTables(org);
    } catch (e) {
      report.append(el('p', { class: 'error-inline', id: 'import-refused' },
        `${t('import_refused')} — ${e.code}: ${e.message}`));
      if (e.errors) {
        report.append(table(['line', 'column', 'message'],
          e.errors.map((x) => el('tr', {}, ...cells(x, ['line', 'column', 'message']))), 'import-errors'));
      }
    }
  };
  return el('section', { id: 'import' }, el('h2', {}, t('import_csv')),
    el('div', { class: 'inline' }, field('what', what), field('file', file),
      el('button', { type: 'button', id: 'import-check', on: { click: () => send(true) } }, t('check_only')),
      el('button', { type: 'button', id: 'import-apply', on: { click: () => send(false) } }, t('do_import')),
      el('button', {
        type: 'button', id: 'export',
        on: {
          click: () => downloadFrom(`/admin/v1/tenants/${org}/${what.value}/export`,
            `${org}-${what.value}.csv`).catch(showError),
        },
      }, t('export_csv'))),
    report);
}

async function registryTables(org) {
  const [st, ro, as, sy] = await Promise.all(['staff', 'roles', 'assignments', 'systems'].map((k) =>
    api('GET', `/admin/v1/tenants/${org}/${k}?limit=1000`)));
  const box = $('registry');
  if (!box) return;
  box.replaceChildren(
    el('h2', {}, t('staff')),
    table(['staff_id', 'display_name', 'active', 'roles'], st.staff.map((x) => el('tr', { id: `staff-${x.staff_id}` },
      ...cells({ ...x, active: t(x.active ? 'active' : 'inactive'), roles: x.roles.map((r) => r.role_code).join(', ') },
        ['staff_id', 'display_name', 'active', 'roles']))), 'staff'),
    el('h2', {}, t('roles')),
    table(['role_code', 'name', 'procedures', 'staff_current'], ro.roles.map((x) => el('tr', {},
      ...cells({ ...x, procedures: x.procedures.join(', ') }, ['role_code', 'name', 'procedures', 'staff_current']))), 'roles'),
    el('h2', {}, t('assignments')),
    table(['staff_id', 'role_code', 'valid_from', 'valid_to', 'current'], as.assignments.map((x) => el('tr', {},
      ...cells(x, ['staff_id', 'role_code', 'valid_from', 'valid_to', 'current']))), 'assignments'),
    el('h2', {}, t('systems')),
    table(['system_id', 'name', 'permissions'], sy.systems.map((x) => el('tr', {},
      ...cells({ ...x, permissions: x.permissions.map((p) => `${p.operation}:${p.scope}`).join(', ') },
        ['system_id', 'name', 'permissions']))), 'systems'));
}

/* A form of one registry record: fields [key, label, input type], body(values)
 * the JSON sent to …/kind; the tables are read again after a change. */
function recordForm(org, kind, title, fields, body) {
  const inputs = {};
  const said = el('span', { class: 'ok', id: `${kind}-said` });
  const form = el('form', { class: 'inline', id: `${kind}-form` }, el('strong', {}, t(title)),
    ...fields.map(([k, label, type]) => {
      inputs[k] = type === 'checkbox'
        ? el('input', { type, id: `${kind}-${k}`, checked: true })
        : el('input', { type, id: `${kind}-${k}`, autocomplete: 'off' });
      return field(label, inputs[k]);
    }),
    el('button', { type: 'submit', id: `${kind}-save` }, t('save')), said);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    said.textContent = '';
    const v = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.type === 'checkbox' ? i.checked : i.value.trim()]));
    try {
      await api('POST', `/admin/v1/tenants/${org}/${kind}`, body(v));
      said.textContent = t('saved');
      await registryTables(org);
    } catch (e) { showError(e); }
  });
  return form;
}

/* "a, b" → ["a", "b"] (nothing: []) */
const list = (s) => s.split(',').map((x) => x.trim()).filter((x) => x !== '');

function recordForms(org) {
  return el('section', { id: 'record-forms' }, el('h2', {}, t('edit_one')),
    recordForm(org, 'staff', 'staff', [['staff_id', 'staff_id', 'text'], ['display_name', 'display_name', 'text'],
      ['active', 'active', 'checkbox']], (v) => v),
    recordForm(org, 'roles', 'roles', [['role_code', 'role_code', 'text'], ['name', 'name', 'text'],
      ['procedures', 'procedures_list', 'text']], (v) => ({ ...v, procedures: list(v.procedures) })),
    recordForm(org, 'assignments', 'assignments', [['staff_id', 'staff_id', 'text'], ['role_code', 'role_code', 'text'],
      ['valid_from', 'valid_from', 'date'], ['valid_to', 'valid_to_end', 'date']], (v) => {
      const b = { staff_id: v.staff_id, role_code: v.role_code };
      if (v.valid_from) b.valid_from = v.valid_from;
      if (v.valid_to) b.valid_to = v.valid_to;
      return b;
    }),
    recordForm(org, 'systems', 'systems', [['system_id', 'system_id', 'text'], ['name', 'name', 'text'],
      ['permissions', 'permissions_list', 'text']], (v) => ({
      ...v,
      permissions: list(v.permissions).map((p) => {
        const [operation, scope] = p.split(':');
        return scope === undefined ? { operation } : { operation, scope };
      }),
    })));
}

async function registryPage(org) {
  const canWrite = S.role === PA || S.role === TA;
  page(el('h1', {}, `${t('registry')} — ${org}`), canWrite ? importForm(org) : '',
    canWrite ? recordForms(org) : '', el('div', { id: 'registry' }));
  await registryTables(org);
}

/* RFC 4180 rows of text (quotes, doubled quotes, CRLF or LF): arrays of cells */
function csvRows(text) {
  const rows = [];
  let row = [], cell = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') q = false; else cell += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') { row.push(cell); cell = ''; } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

/* A rejected upload's report (CSV: line,field,code,reason; never values),
 * read a page at a time up to its size, shown as a table and offered as a file. */
async function showReport(org, up, box) {
  const parts = [];
  let got = 0;
  while (got < up.report_size) {
    const r = await fetch(`/admin/v1/tenants/${org}/bulk/report?upload=${up.upload_id}&offset=${got}`,
      { credentials: 'same-origin' });
    if (!r.ok) throw await r.json();
    const b = new Uint8Array(await r.arrayBuffer());
    if (!b.length) break;
    parts.push(b);
    got += b.length;
  }
  const blob = new Blob(parts, { type: 'text/csv' });
  const all = csvRows(await blob.text()).slice(1);
  const SHOWN = 1000;
  const rows = all.slice(0, SHOWN).map((c) => el('tr', {}, ...[0, 1, 2, 3].map((i) => el('td', {}, c[i] ?? ''))));
  box.replaceChildren(el('h2', {}, `${t('report')} — ${up.file_name}`),
    el('button', { type: 'button', id: 'report-csv', on: { click: () => download(`${up.upload_id}-report.csv`, blob) } },
      t('download_csv')),
    all.length > SHOWN ? el('p', { class: 'warn' }, `${SHOWN} / ${all.length} ${t('shown_rest_in_csv')}`) : '',
    table(['line', 'field', 'code', 'reason'], rows, 'report-lines'));
}

async function bulkPage(org) {
  const [u, f] = await Promise.all([api('GET', `/admin/v1/tenants/${org}/bulk?limit=100`),
    api('GET', `/admin/v1/tenants/${org}/bulk/files?limit=100`)]);
  const box = el('div', { id: 'report' });
  const ucols = ['file_name', 'system_id', 'item_code', 'mode', 'as_of', 'state', 'records', 'bad_records', 'code', 'message', 'opened_at'];
  const urows = u.uploads.map((x) => el('tr', { id: `upload-${x.upload_id}` }, ...cells(x, ucols),
    el('td', {}, x.report_size > 0 ? el('button', {
      type: 'button', class: 'show-report',
      on: { click: () => { clearError(); showReport(org, x, box).catch(showError); } },
    }, t('show_report')) : '')));
  const fcols = ['id', 'file_name', 'system_id', 'item_code', 'mode', 'as_of', 'records', 'persons', 'applied_at'];
  page(el('h1', {}, `${t('bulk')} — ${org}`),
    el('h2', {}, t('uploads')),
    table(ucols.map((c) => ({ system_id: 'system', opened_at: 'started_at' })[c] || c).concat(['report']), urows, 'uploads'),
    box,
    el('h2', {}, t('files_applied')),
    table(fcols.map((c) => (c === 'system_id' ? 'system' : c)), f.files.map((x) => el('tr', {}, ...cells(x, fcols))), 'files'));
}

/* usage by day: a bar chart (SVG drawn from numbers, no HTML parsed) and
 * the same rows as a CSV file for the cost-sharing spreadsheet */
const USAGE_COLS = ['day', 'asked', 'asked_provided', 'asked_not_found', 'asked_withheld', 'asked_pending',
  'asked_refused', 'asked_expired', 'asked_failed', 'answered', 'answered_provided', 'answered_not_found',
  'answered_withheld', 'held', 'answered_refused', 'answered_expired', 'answered_undelivered',
  'rows_registered', 'bulk_files'];

function chart(days) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  };
  const W = 720, H = 200, pad = 30, n = Math.max(days.length, 1);
  const max = Math.max(1, ...days.map((d) => Math.max(d.asked, d.answered)));
  const bw = (W - pad) / n;
  const s = svg('svg', { viewBox: `0 0 ${W} ${H + 20}`, width: W, height: H + 20, id: 'usage-chart', role: 'img' });
  s.append(svg('line', { x1: pad, y1: H, x2: W, y2: H, class: 'axis' }));
  const top = svg('text', { x: 0, y: 12, class: 'tick' });
  top.textContent = String(max);
  s.append(top);
  days.forEach((d, i) => {
    const x = pad + i * bw;
    for (const [k, off, cls] of [['asked', 0, 'bar-asked'], ['answered', bw / 2, 'bar-answered']]) {
      const h = (d[k] / max) * (H - 20);
      const r = svg('rect', { x: x + off + 1, y: H - h, width: Math.max(bw / 2 - 2, 1), height: h, class: cls });
      const tip = svg('title', {});
      tip.textContent = `${d.day} ${t(`legend_${k}`)} ${d[k]}`;
      r.append(tip);
      s.append(r);
    }
    if (n <= 31 || i % Math.ceil(n / 31) === 0) {
      const lab = svg('text', { x: x + 1, y: H + 14, class: 'tick' });
      lab.textContent = d.day.slice(8);
      s.append(lab);
    }
  });
  return el('figure', { class: 'chart' }, s, el('figcaption', {},
    el('span', { class: 'key-asked' }, '■'), ` ${t('legend_asked')}  `,
    el('span', { class: 'key-answered' }, '■'), ` ${t('legend_answered')}`));
}

function csvOf(rows) {
  const q = (v) => {
    const s = String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [USAGE_COLS.join(','), ...rows.map((r) => USAGE_COLS.map((c) => q(r[c] ?? '')).join(','))].join('\r\n') + '\r\n';
}

async function usagePage(org) {
  const since = el('input', { type: 'date', name: 'since', id: 'u-since' });
  const until = el('input', { type: 'date', name: 'until', id: 'u-until' });
  const form = el('form', { id: 'usage-form', class: 'inline' }, field('since', since), field('until', until),
    el('button', { type: 'submit', id: 'usage-show' }, t('show')));
  const out = el('div', { id: 'usage' });
  const read = latest((q) => api('GET', `/admin/v1/tenants/${org}/usage${q}`));
  const show = async () => {
    const u = await read(query(form));
    if (!u) return;
    const cols = ['day', 'asked', 'answered', 'held', 'answered_refused', 'answered_expired', 'answered_undelivered', 'rows_registered'];
    out.replaceChildren(chart(u.days),
      el('button', {
        type: 'button', id: 'usage-csv',
        on: { click: () => download(`${org}-usage-${u.since}-${u.until}.csv`, new Blob([csvOf(u.days)], { type: 'text/csv' })) },
      }, t('download_csv')),
      table(cols.map((c) => (c === 'day' ? c : `u_${c}`)), u.days.map((d) => el('tr', {}, ...cells(d, cols))), 'usage-days'));
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); clearError(); show().catch(showError); });
  page(el('h1', {}, `${t('usage')} — ${org}`), form, out);
  await show();
}

/* maintenance mode of a scope (a tenant's or the gateway's): shown, and set
 * or ended with a reason where the role may */
function maintenanceBox(rows, path, canSet, scope) {
  const on = rows.some((r) => r.scope === scope);
  const reason = el('input', { type: 'text', id: 'maint-reason', maxlength: 200, placeholder: t('reason') });
  const set = async (flag) => {
    clearError();
    const body = flag ? { on: true, reason: reason.value } : { on: false };
    try { await api('POST', path, body); route(); } catch (e) { showError(e); }
  };
  return el('section', { id: 'maintenance' }, el('h2', {}, t('maintenance')),
    rows.length ? table(['scope', 'reason', 'set_by', 'set_at'], rows.map((r) => el('tr', {}, ...cells(r, ['scope', 'reason', 'set_by', 'set_at']))), 'maint-rows')
      : el('p', { id: 'maint-state' }, t('maint_none')),
    canSet ? el('div', { class: 'inline' }, reason,
      el('button', { type: 'button', id: 'maint-on', on: { click: () => set(true) } }, t('maint_on')),
      on ? el('button', { type: 'button', id: 'maint-off', on: { click: () => set(false) } }, t('maint_off')) : '') : '');
}

async function settingsPage(org) {
  const canSet = S.role === PA || S.role === TA;
  const [p, m] = await Promise.all([api('GET', `/admin/v1/tenants/${org}/policy`),
    api('GET', `/admin/v1/tenants/${org}/maintenance`)]);
  const secs = el('input', { type: 'number', id: 'hold-deadline', min: 1, max: 7776000, value: p.policy.hold_deadline_s, disabled: !canSet });
  const saved = el('span', { id: 'policy-saved', class: 'ok' });
  const form = el('form', { id: 'policy-form', class: 'inline' }, field('hold_deadline', secs),
    el('span', { class: 'small' }, left(p.policy.hold_deadline_s)),
    canSet ? el('button', { type: 'submit', id: 'policy-save' }, t('save')) : '', saved);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    try {
      await api('POST', `/admin/v1/tenants/${org}/policy`, { hold_deadline_s: Number(secs.value) });
      saved.textContent = t('saved');
    } catch (e) { showError(e); }
  });
  page(el('h1', {}, `${t('settings')} — ${org}`), el('h2', {}, t('hold_deadline')), form,
    maintenanceBox(m.maintenance, `/admin/v1/tenants/${org}/maintenance`, canSet, `tenant:${org}`));
}

/* the gateway itself (platform admins): maintenance, the directory in use
 * with a refresh, the connectivity check on demand */
async function gatewayPage() {
  const [m, d, tn] = await Promise.all([api('GET', '/admin/v1/maintenance'), api('GET', '/admin/v1/directory'),
    api('GET', '/admin/v1/tenants')]);
  const dir = d.directory;
  const last = tn.last_change;
  const said = el('p', { id: 'refresh-said', class: 'ok' });
  const diag = el('div', { id: 'diagnosis' });
  page(el('h1', {}, `${t('gateway')} ${S.gateway || ''}`),
    maintenanceBox(m.maintenance, '/admin/v1/maintenance', true, `gateway:${S.gateway}`),
    el('section', { id: 'directory' }, el('h2', {}, t('directory')),
      el('dl', { class: 'facts' },
        ...['issued_at', 'legal_basis_version', 'sha256', 'installs', 'last_error'].flatMap((k) =>
          [el('dt', {}, t(k)), el('dd', { id: `dir-${k}` }, String(dir[k] ?? ''))]),
        el('dt', {}, t('organisations')), el('dd', { id: 'dir-orgs' }, dir.organisations.map((o) => o.code).join(', '))),
      el('button', {
        type: 'button', id: 'dir-refresh',
        on: {
          click: async () => {
            clearError();
            try {
              const r = await api('POST', '/admin/v1/directory/refresh', {});
              said.textContent = t(r.changed ? 'changed' : 'unchanged');
            } catch (e) { showError(e); }
          },
        },
      }, t('refresh')), said),
    el('section', { id: 'tenants' }, el('h2', {}, t('tenants')),
      table(['code', 'state', 'database', 'added_at', 'retired_at'], tn.tenants.map((x) =>
        el('tr', { class: x.state === 'hosted' ? '' : 'warn' }, ...cells({ ...x, state: t(x.state) },
          ['code', 'state', 'database', 'added_at', 'retired_at']))), 'tenant-rows'),
      last ? el('p', { id: 'tenants-last', class: last.error || last.refused.length ? 'warn' : 'small' },
        `${t('last_change')} ${last.at}: ${t('added')} ${last.added.join(', ') || '-'}; ${t('retired')} ${last.retired.join(', ') || '-'}`,
        ...last.refused.map((r) => el('span', { class: 'refused' }, ` / ${r.tenant}: ${r.reason}`)),
        last.error ? ` / ${last.error}` : '') : '',
      el('p', { class: 'small' }, t('tenants_note'))),
    el('section', {}, el('h2', {}, t('diagnose')),
      el('button', {
        type: 'button', id: 'diag-run',
        on: {
          click: async () => {
            clearError();
            diag.replaceChildren();
            try {
              const r = await api('GET', '/admin/v1/diagnose');
              diag.replaceChildren(table(['check', 'target', 'status', 'detail'], r.checks.map((c) =>
                el('tr', { class: c.status === 'ok' ? '' : 'warn' }, ...cells(c, ['check', 'target', 'status', 'detail']))), 'diag-checks'));
            } catch (e) { showError(e); }
          },
        },
      }, t('run')), diag));
}

/* A new password twice, as a form's fields: [labels..., check()] where
 * check() answers the password or throws (they differ). */
function newPasswordFields(prefix) {
  const a = el('input', { type: 'password', id: `${prefix}-new`, autocomplete: 'new-password', minlength: 12, required: true });
  const b = el('input', { type: 'password', id: `${prefix}-again`, autocomplete: 'new-password', minlength: 12, required: true });
  const check = () => {
    if (a.value !== b.value) throw { code: '', message: t('mismatch') };
    return a.value;
  };
  const clear = () => { a.value = ''; b.value = ''; };
  return { fields: [field('new_password', a), field('new_password_again', b)], check, clear };
}

/* Open sessions (the answer of GET /admin/v1/sessions: a platform admin's every one,
 * anyone else's own), each with an end button; ending this session is a
 * logout. */
function sessionsTable(r) {
  const end = (body, mine) => async () => {
    clearError();
    try {
      await api('POST', '/admin/v1/sessions/end', body);
      if (mine) {
        S = null;
        if (location.hash !== '#/') { location.hash = '#/'; return; } /* the hash change routes */
      }
      route();
    } catch (e) { showError(e); }
  };
  const rows = r.sessions.map((x) => el('tr', { id: `sess-${x.session}`, class: x.current ? 'current' : '' },
    ...cells(x, ['operator', 'session', 'created_at', 'last_seen', 'ends_at']),
    el('td', {}, x.current ? `${t('this_session')} ` : '',
      el('button', { type: 'button', class: 'end-session', on: { click: end({ session: x.session }, x.current) } }, t('end')))));
  return table(['operator', 'session', 'created', 'last_seen', 'ends_at', 'action'], rows, 'sessions');
}

/* One's own account: the password (the current one first; the other
 * sessions end) and one's sessions. Every role. */
async function accountPage() {
  const own = `/admin/v1/sessions?operator=${encodeURIComponent(S.operator)}`;
  const cur = el('input', { type: 'password', id: 'pw-current', autocomplete: 'current-password', required: true });
  /* for the browser's password manager: whose password this is */
  const user = el('input', { type: 'text', autocomplete: 'username', value: S.operator, hidden: true, readonly: true });
  const np = newPasswordFields('pw');
  const said = el('p', { id: 'pw-said' });
  const form = el('form', { class: 'inline', id: 'password-form' }, user, field('current_password', cur), ...np.fields,
    el('button', { type: 'submit', id: 'pw-change' }, t('change_password')), el('span', { class: 'small' }, t('pw_rule')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    said.replaceChildren();
    try {
      const body = { password: cur.value, new_password: np.check() };
      cur.value = '';
      np.clear();
      const r = await api('POST', '/admin/v1/password', body);
      said.replaceChildren(el('span', { class: 'ok' }, `${t('password_changed')}${r.other_sessions_ended})`));
      sessions.replaceChildren(sessionsTable(await api('GET', own)));
    } catch (e) {
      cur.value = '';
      np.clear();
      /* a wrong current password that locked the operator ended this session too */
      if (e.code === 'KH-6002' || e.code === 'KH-6003') {
        try { await whoami(); } catch (x) { S = null; await route(); }
      }
      showError(e);
    }
  });
  const sessions = el('div', { id: 'own-sessions' }, sessionsTable(await api('GET', own)));
  page(el('h1', {}, `${t('account')} — ${S.operator} (${S.role})`),
    el('h2', {}, t('change_password')), form, said,
    el('h2', {}, t('sessions')), sessions);
}

const ROLES = ['platform_admin', 'tenant_admin', 'responder', 'auditor', 'metrics'];

function addOperatorForm() {
  const name = el('input', {
    type: 'text', id: 'op-name', required: true, pattern: '[a-z0-9][a-z0-9._\\-]{0,31}', maxlength: 32, autocomplete: 'off',
  });
  const role = el('select', { id: 'op-role' }, ...ROLES.map((r) => el('option', { value: r }, r)));
  const orgs = (S.tenants || []).map((o) =>
    el('label', { class: 'check' }, el('input', { type: 'checkbox', class: 'op-tenant', value: o }), o));
  const np = newPasswordFields('op');
  const said = el('p', { id: 'op-said' });
  const form = el('form', { class: 'inline', id: 'operator-form' }, field('name', name), field('role', role),
    el('fieldset', { class: 'tenants' }, el('legend', {}, t('tenants')), ...orgs), ...np.fields,
    el('button', { type: 'submit', id: 'op-add' }, t('add')), said);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    try {
      const body = { name: name.value.trim(), role: role.value, password: np.check() };
      if (role.value !== PA) body.tenants = orgs.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
      np.clear();
      await api('POST', '/admin/v1/operators', body);
      await operatorsPage();
      $('op-said').replaceChildren(el('span', { class: 'ok' }, `${t('added')}: ${body.name}`));
    } catch (e) { np.clear(); showError(e); }
  });
  return form;
}

async function operatorsPage() {
  const r = await api('GET', '/admin/v1/operators');
  const ss = await api('GET', '/admin/v1/sessions');
  const open = new Set(ss.sessions.map((x) => x.operator));
  const act = (path, body, done) => async () => {
    clearError();
    try {
      await api('POST', path, body);
      await operatorsPage();
      if (done) $('op-said').replaceChildren(el('span', { class: 'ok' }, done));
    } catch (e) { showError(e); }
  };
  /* a reset: the new password twice, behind a disclosure of its own */
  const reset = (o) => {
    const np = newPasswordFields(`reset-${o.name}`);
    const go = el('button', { type: 'button', class: 'reset' }, t('reset_password'));
    go.addEventListener('click', () => {
      let pw;
      try { pw = np.check(); } catch (e) { np.clear(); showError(e); return; }
      np.clear();
      act('/admin/v1/operators/password', { name: o.name, new_password: pw }, `${o.name}: ${t('password_reset')}`)();
    });
    return el('details', { class: 'reset-box' }, el('summary', {}, t('reset_password')), ...np.fields, go);
  };
  const rows = r.operators.map((o) => el('tr', { id: `op-${o.name}` },
    ...cells({ ...o, tenants: o.tenants.join(', '), active: t(o.active ? 'active' : 'inactive') },
      ['name', 'role', 'tenants', 'active', 'failed_logins', 'locked_until', 'created_at']),
    el('td', {}, o.name === S.operator ? el('a', { href: '#/account' }, t('account')) : el('span', {},
      el('button', {
        type: 'button', class: o.active ? 'disable' : 'enable',
        on: { click: act(`/admin/v1/operators/${o.active ? 'disable' : 'enable'}`, { name: o.name }) },
      }, t(o.active ? 'disable' : 'enable')),
      o.locked_until && Date.parse(o.locked_until) > Date.now()
        ? el('button', { type: 'button', class: 'unlock', on: { click: act('/admin/v1/operators/unlock', { name: o.name }) } }, t('unlock')) : '',
      open.has(o.name) ? el('button', {
        type: 'button', class: 'end-all',
        on: { click: act('/admin/v1/sessions/end', { operator: o.name }, `${o.name}: ${t('ended')}`) },
      }, `${t('sessions')}: ${t('end_all')}`) : '',
      reset(o)))));
  page(el('h1', {}, t('operators')),
    table(['name', 'role', 'tenants', 'state', 'failed_logins', 'locked_until', 'created', 'action'], rows, 'operators'),
    el('h2', {}, t('add_operator')), addOperatorForm(),
    el('h2', {}, t('sessions')), sessionsTable(ss));
}

/* ------------------------------------------------------------ frame */

async function whoami() {
  const w = await api('GET', '/admin/v1/whoami');
  S = w;
}

let current = null; /* the tenant whose pages the navigation shows */

function frame() {
  $('lang').textContent = t('lang');
  $('logout').textContent = t('logout');
  $('logout').hidden = !S;
  $('who').textContent = S ? `${S.operator} (${S.role})` : '';
  const nav = $('nav');
  nav.replaceChildren();
  if (!S) return;
  nav.append(el('a', { href: '#/', id: 'nav-dashboard' }, t('dashboard')));
  const orgs = S.tenants || [];
  if (!orgs.includes(current)) current = orgs[0] || null;
  if (orgs.length > 1) {
    const sel = el('select', { id: 'nav-tenant', 'aria-label': t('tenant') },
      ...orgs.map((o) => el('option', { value: o, selected: o === current }, o)));
    sel.addEventListener('change', () => {
      current = sel.value;
      const m = location.hash.match(/^#\/t\/[0-9A-Z]{6}\/([a-z]+)$/);
      const to = m ? `#/t/${current}/${m[1]}` : location.hash || '#/';
      if (to === location.hash) route(); else location.hash = to;
    });
    nav.append(sel);
  } else if (current) {
    nav.append(el('span', {}, current));
  }
  if (current) {
    for (const pg of Object.keys(PAGES).filter(may)) {
      nav.append(el('a', { href: `#/t/${current}/${pg}`, id: `nav-${pg}` }, t(pg)));
    }
  }
  nav.append(el('a', { href: '#/account', id: 'nav-account' }, t('account')));
  if (S.role === PA) {
    nav.append(el('a', { href: '#/operators', id: 'nav-operators' }, t('operators')));
    nav.append(el('a', { href: '#/gateway', id: 'nav-gateway' }, t('gateway')));
  }
}

const VIEWS = {
  pending: pendingPage, flags: flagsPage, queries: queriesPage, audit: auditPage,
  registry: registryPage, bulk: bulkPage, usage: usagePage, settings: settingsPage,
};

async function route() {
  clearError();
  if (!S) {
    try { await whoami(); } catch (e) { S = null; }
  }
  const h = location.hash.replace(/^#/, '') || '/';
  const m = h.match(/^\/t\/([0-9A-Z]{6})\/([a-z]+)$/);
  if (m && S && (S.tenants || []).includes(m[1])) current = m[1];
  frame();
  if (!S) { loginPage(); return; }
  try {
    if (m && VIEWS[m[2]]) {
      if (!may(m[2]) || !(S.tenants || []).includes(m[1])) {
        page(el('h1', {}, t(m[2])), el('p', { class: 'warn', id: 'not-allowed' }, t('not_allowed')));
      } else {
        await VIEWS[m[2]](m[1]);
      }
    } else if (h === '/account') {
      await accountPage();
    } else if (h === '/operators' || h === '/gateway') {
      if (S.role !== PA) page(el('h1', {}, t(h.slice(1))), el('p', { class: 'warn', id: 'not-allowed' }, t('not_allowed')));
      else await (h === '/operators' ? operatorsPage() : gatewayPage());
    } else {
      await dashboard();
    }
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
