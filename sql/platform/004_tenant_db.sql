-- A tenant's schema may live in another database than the gateway's own
-- (issue 12: the gateway's tenant_db option puts each tenant on the
-- PostgreSQL cluster of its choice). The operator tables stay in the
-- gateway's own database, so the tenants an operator may act on are no
-- longer all rows of this database's kh.tenant: the reference becomes a
-- check of the code's form. A grant for an organisation the gateway does not
-- host gives nothing: the admin API acts only for tenants of the gateway's
-- configuration, and only for those granted (deny by default).
ALTER TABLE kh.operator_tenant DROP CONSTRAINT IF EXISTS operator_tenant_org_code_fkey;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'operator_tenant_org_code_form') THEN
        ALTER TABLE kh.operator_tenant ADD CONSTRAINT operator_tenant_org_code_form
            CHECK (org_code ~ '^[0-9A-Z]{6}$');
    END IF;
END
$$;
