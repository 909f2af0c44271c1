-- The seed item catalogue: items TK001 (local tax information) and TK002
-- (resident-record information), layout version 1, and their code tables.
-- Modelled on DOMAIN.md "Item layouts". Idempotent.

INSERT INTO kh.item (item_code, name, layout_version) VALUES
    ('TK001', '地方税関係情報 (local tax information)', 1),
    ('TK002', '住民票関係情報 (resident-record information)', 1)
ON CONFLICT DO NOTHING;

INSERT INTO kh.item_field (item_code, layout_version, seq, name, type, length, mandatory, code_table)
VALUES
    ('TK001', 1, 1,  'fiscal_year',          '9',    4,  true,  NULL),
    ('TK001', 1, 2,  'annual_tax',           'S9',   13, false, NULL),
    ('TK001', 1, 3,  'municipal_tax_flat',   'S9',   13, false, NULL),
    ('TK001', 1, 4,  'municipal_tax_income', 'S9',   13, false, NULL),
    ('TK001', 1, 5,  'prefectural_tax',      'S9',   13, false, NULL),
    ('TK001', 1, 6,  'total_income',         'S9',   13, true,  NULL),
    ('TK001', 1, 7,  'separate_income',      'S9',   13, false, NULL),
    ('TK001', 1, 8,  'deduction_medical',    'S9',   13, false, NULL),
    ('TK001', 1, 9,  'spouse_category',      'CODE', 1,  false, 'SPOUSE'),
    ('TK002', 1, 1,  'household_no',         '9',    10, true,  NULL),
    ('TK002', 1, 2,  'relation',             'CODE', 2,  true,  'RELATION'),
    ('TK002', 1, 3,  'municipality_code',    '9',    6,  true,  NULL),
    ('TK002', 1, 4,  'move_in_date',         'DATE', 8,  false, NULL),
    ('TK002', 1, 5,  'change_reason',        'CODE', 2,  false, 'CHANGE_REASON'),
    ('TK002', 1, 6,  'change_date',          'DATE', 8,  false, NULL),
    ('TK002', 1, 7,  'resident_status',      'CODE', 1,  true,  'RES_STATUS'),
    ('TK002', 1, 8,  'remarks',              'X',    40, false, NULL)
ON CONFLICT DO NOTHING;

INSERT INTO kh.code_value (code_table, code, meaning) VALUES
    ('SPOUSE', '0', 'none'),
    ('SPOUSE', '1', 'general'),
    ('SPOUSE', '2', 'elderly'),
    ('SPOUSE', '3', 'special'),
    ('RELATION', '01', 'head of household (世帯主)'),
    ('RELATION', '02', 'spouse (妻・夫)'),
    ('RELATION', '03', 'child (子)'),
    ('RELATION', '99', 'other'),
    ('CHANGE_REASON', 'A1', '転入 move-in'),
    ('CHANGE_REASON', 'A2', '出生 birth'),
    ('CHANGE_REASON', 'B1', '転出 move-out'),
    ('CHANGE_REASON', 'B2', '死亡 death'),
    ('CHANGE_REASON', 'C1', '転居 move within the municipality'),
    ('CHANGE_REASON', 'C2', '氏名変更 name change'),
    ('CHANGE_REASON', 'C3', '世帯変更 household change'),
    ('CHANGE_REASON', 'D1', '職権記載 entry by authority'),
    ('CHANGE_REASON', 'D2', '職権消除 removal by authority'),
    ('RES_STATUS', '1', 'resident'),
    ('RES_STATUS', '2', 'moved out'),
    ('RES_STATUS', '3', 'deceased')
ON CONFLICT DO NOTHING;
