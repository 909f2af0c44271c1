-- Layout model of refdb/FORMAT.md section 1: padding of 9 fields, character
-- set of X fields, occurrence counts, and GROUP fields (one level). The
-- catalogue rows themselves are data: sql/catalogue/*.tsv, loaded by
-- tools/khdb migrate after the migrations. Holds no personal data.

ALTER TABLE kh.item_field
    ADD COLUMN pad        text NULL CHECK (pad IN ('zero', 'suppress')),
    ADD COLUMN charset    text NULL CHECK (charset IN ('any', 'ascii', 'kana')),
    ADD COLUMN min_occurs int  NOT NULL DEFAULT 1 CHECK (min_occurs >= 0),
    ADD COLUMN max_occurs int  NOT NULL DEFAULT 1 CHECK (max_occurs BETWEEN 1 AND 999),
    ADD COLUMN group_name text NULL;

-- Rows loaded before this migration (none in a deployment) get the defaults
-- of their type, so that the constraints below hold.
UPDATE kh.item_field SET pad = 'zero' WHERE type = '9' AND pad IS NULL;
UPDATE kh.item_field SET charset = 'any' WHERE type = 'X' AND charset IS NULL;

ALTER TABLE kh.item_field DROP CONSTRAINT item_field_type_check;
ALTER TABLE kh.item_field DROP CONSTRAINT item_field_length_check;
ALTER TABLE kh.item_field
    ADD CONSTRAINT item_field_type_check
        CHECK (type IN ('X', '9', 'S9', 'DATE', 'CODE', 'GROUP')),
    ADD CONSTRAINT item_field_length_check
        CHECK (CASE type WHEN 'GROUP' THEN length = 0
                         WHEN 'DATE' THEN length = 8
                         ELSE length BETWEEN 1 AND 999 END),
    ADD CONSTRAINT item_field_pad_type_check CHECK ((type = '9') = (pad IS NOT NULL)),
    ADD CONSTRAINT item_field_charset_type_check CHECK ((type = 'X') = (charset IS NOT NULL)),
    ADD CONSTRAINT item_field_occurs_check CHECK (min_occurs <= max_occurs),
    -- Whether a group must be present is said by its min_occurs.
    ADD CONSTRAINT item_field_group_mandatory_check CHECK (type <> 'GROUP' OR NOT mandatory),
    -- A group is one level deep: a GROUP belongs to no group, and a field of a
    -- group does not repeat on its own (the group repeats).
    ADD CONSTRAINT item_field_group_check
        CHECK (group_name IS NULL OR (type <> 'GROUP' AND min_occurs = 1 AND max_occurs = 1)),
    ADD CONSTRAINT item_field_group_fk FOREIGN KEY (item_code, layout_version, group_name)
        REFERENCES kh.item_field (item_code, layout_version, name);
