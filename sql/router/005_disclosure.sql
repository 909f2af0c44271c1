-- Records disclosure (issue 5, flow 5): the router asks organisations for a
-- person's records on behalf of the national portal. Each request it sends
-- is recorded like any message (type DISCLOSURE_REQUEST, sender ROUTER),
-- with the portal it acted for. The person is not recorded here: the
-- message id ties the row to the organisation's own record of the person.
ALTER TABLE router.query_record ADD COLUMN IF NOT EXISTS requester text NULL;
-- a disclosure looks a person's link codes up by person key, at every organisation
CREATE INDEX IF NOT EXISTS linkcode_person_key ON router.linkcode (person_key);
