-- Minimisation (issue 4): a legal-basis row may limit an item to some of its
-- fields (top-level field or group names of the item's layout). An item of
-- a row with no rows here may be answered with all its fields. The values
-- follow DOMAIN.md: e.g. total income instead of the itemised breakdown, and
-- not the name and address the asker already holds.
CREATE TABLE IF NOT EXISTS router.legal_basis_field (
    legal_basis text NOT NULL REFERENCES router.legal_basis,
    item_code   text NOT NULL,
    field       text NOT NULL CHECK (field ~ '^[a-z][a-z0-9_]{0,62}$'),
    PRIMARY KEY (legal_basis, item_code, field)
);

INSERT INTO router.legal_basis_field (legal_basis, item_code, field) VALUES
    -- national health insurance: the income that sets the premium
    ('LB02', 'TK001', 'fiscal_year'), ('LB02', 'TK001', 'total_income'),
    ('LB02', 'TK001', 'separate_income'), ('LB02', 'TK001', 'municipal_tax_income'),
    -- long-term care insurance: income and tax level
    ('LB05', 'TK001', 'fiscal_year'), ('LB05', 'TK001', 'total_income'),
    ('LB05', 'TK001', 'municipal_tax_income'), ('LB05', 'TK001', 'annual_tax'),
    -- high-school tuition support: the income-based municipal tax only
    ('LB11', 'TK001', 'fiscal_year'), ('LB11', 'TK001', 'municipal_tax_income'),
    -- student loans: income and dependents
    ('LB12', 'TK001', 'fiscal_year'), ('LB12', 'TK001', 'total_income'),
    ('LB12', 'TK001', 'dependents'),
    -- national pension: income, spouse and dependents (premium exemption);
    -- resident status without the name kana and remarks
    ('LB07', 'TK001', 'fiscal_year'), ('LB07', 'TK001', 'total_income'),
    ('LB07', 'TK001', 'spouse_category'), ('LB07', 'TK001', 'dependents'),
    ('LB07', 'TK002', 'household_no'), ('LB07', 'TK002', 'relation'),
    ('LB07', 'TK002', 'resident_status'), ('LB07', 'TK002', 'change_reason'),
    ('LB07', 'TK002', 'change_date'),
    -- child allowance: income, spouse, dependents; resident record without
    -- the name kana the municipality already holds
    ('LB01', 'TK001', 'fiscal_year'), ('LB01', 'TK001', 'total_income'),
    ('LB01', 'TK001', 'annual_tax'), ('LB01', 'TK001', 'municipal_tax_income'),
    ('LB01', 'TK001', 'spouse_category'), ('LB01', 'TK001', 'dependents'),
    ('LB01', 'TK002', 'household_no'), ('LB01', 'TK002', 'relation'),
    ('LB01', 'TK002', 'municipality_code'), ('LB01', 'TK002', 'move_in_date'),
    ('LB01', 'TK002', 'change_reason'), ('LB01', 'TK002', 'change_date'),
    ('LB01', 'TK002', 'resident_status'), ('LB01', 'TK002', 'previous_municipality_code'),
    ('LB01', 'TK002', 'destination_unknown'), ('LB01', 'TK002', 'notification_date')
ON CONFLICT DO NOTHING;
