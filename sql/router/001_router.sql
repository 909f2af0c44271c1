-- The router simulator's schema: procedures, the legal-basis table (別表第二
-- in our own codes), link codes per organisation, replay protection and the
-- router's own query record. Run by tools/khdb router as the router role with
-- search_path = router.

CREATE TABLE IF NOT EXISTS router.procedure (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE IF NOT EXISTS router.legal_basis (
    id             text PRIMARY KEY,
    asker_class    text NOT NULL,
    procedure      text NOT NULL REFERENCES router.procedure,
    provider_class text NOT NULL,
    items          text[] NOT NULL
);

-- person_key: the router's own key for a person (derived from the national
-- reference); link codes differ per organisation.
CREATE TABLE IF NOT EXISTS router.linkcode (
    org        text NOT NULL,
    link_code  text NOT NULL,
    person_key text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org, link_code),
    UNIQUE (org, person_key)
);

CREATE TABLE IF NOT EXISTS router.seen_msg (
    sender     text NOT NULL,
    msg_id     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (sender, msg_id)
);

CREATE TABLE IF NOT EXISTS router.query_record (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    msg_id    text NOT NULL,
    type      text NOT NULL,
    sender    text,
    recipient text,
    procedure text,
    items     text[],
    outcome   text,
    code      text
);

INSERT INTO router.procedure (code, name) VALUES
    ('JT001', 'child allowance (児童手当)'),
    ('JT002', 'national health insurance (国民健康保険)'),
    ('JT003', 'public assistance (生活保護)'),
    ('JT004', 'long-term care insurance (介護保険)'),
    ('JT005', 'disability welfare (障害福祉)'),
    ('JT006', 'national pension (国民年金)'),
    ('JT007', 'child-rearing allowance (児童扶養手当)'),
    ('JT008', 'public housing (公営住宅)'),
    ('JT009', 'high-school tuition support (高等学校等就学支援金)'),
    ('JT010', 'student loans (奨学金)')
ON CONFLICT DO NOTHING;

INSERT INTO router.legal_basis (id, asker_class, procedure, provider_class, items) VALUES
    ('LB01', 'municipality', 'JT001', 'municipality', '{TK001,TK002}'),
    ('LB02', 'municipality', 'JT002', 'municipality', '{TK001}'),
    ('LB03', 'prefecture',   'JT003', 'municipality', '{TK001,TK002,TK003}'),
    ('LB04', 'municipality', 'JT003', 'municipality', '{TK001,TK002,TK003}'),
    ('LB05', 'municipality', 'JT004', 'municipality', '{TK001}'),
    ('LB06', 'municipality', 'JT005', 'municipality', '{TK001,TK002}'),
    ('LB07', 'pension',      'JT006', 'municipality', '{TK001,TK002}'),
    ('LB08', 'prefecture',   'JT007', 'municipality', '{TK001,TK002}'),
    ('LB09', 'prefecture',   'JT008', 'municipality', '{TK001,TK002}'),
    ('LB10', 'municipality', 'JT008', 'municipality', '{TK001,TK002}'),
    ('LB11', 'prefecture',   'JT009', 'municipality', '{TK001}'),
    ('LB12', 'scholarship',  'JT010', 'municipality', '{TK001}'),
    ('LB13', 'municipality', 'JT003', 'pension',      '{TK008}')
ON CONFLICT DO NOTHING;
