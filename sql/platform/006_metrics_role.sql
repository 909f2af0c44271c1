-- A role for Prometheus scrapes (issue 13): GET /metrics and nothing else
-- of the admin API (no listing, no held answer, no registry: no personal
-- data), where scrapes used an auditor, who can list queries and local IDs.
DO $$
DECLARE
    c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
             WHERE conrelid = 'kh.operator'::regclass AND contype = 'c'
               AND pg_get_constraintdef(oid) LIKE '%role%platform_admin%'
    LOOP
        EXECUTE format('ALTER TABLE kh.operator DROP CONSTRAINT %I', c);
    END LOOP;
END
$$;
ALTER TABLE kh.operator ADD CONSTRAINT operator_role_check
    CHECK (role IN ('platform_admin', 'tenant_admin', 'responder', 'auditor', 'metrics'));
