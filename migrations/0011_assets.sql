-- Assets: every code a ledger account may hold, with its scale (decimal places an amount may
-- have). Codes are 1-32 characters of A-Z 0-9 _ - (USD, USDC, IRAUSD, VACHR, AAPL, BTC). Every
-- process reads this one table, so a replay decides as the first run did. Seeded with every
-- ISO 4217 currency that has minor units (from the iso_currency crate; src/store/assets.rs
-- checks that this list matches it). Managed with `ledgerline assets add|list|import`.
CREATE TABLE assets (
    code         text PRIMARY KEY CHECK (code ~ '^[A-Z0-9_-]{1,32}$'),
    scale        smallint NOT NULL CHECK (scale BETWEEN 0 AND 18),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 256),
    created_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO assets (code, scale, description) VALUES
    ('AED', 2, 'United Arab Emirates dirham'),
    ('AFN', 2, 'Afghan afghani'),
    ('ALL', 2, 'Albanian lek'),
    ('AMD', 2, 'Armenian dram'),
    ('AOA', 2, 'Angolan kwanza'),
    ('ARS', 2, 'Argentine peso'),
    ('AUD', 2, 'Australian dollar'),
    ('AWG', 2, 'Aruban florin'),
    ('AZN', 2, 'Azerbaijani manat'),
    ('BAM', 2, 'Bosnia and Herzegovina convertible mark'),
    ('BBD', 2, 'Barbados dollar'),
    ('BDT', 2, 'Bangladeshi taka'),
    ('BGN', 2, 'Bulgarian lev'),
    ('BHD', 3, 'Bahraini dinar'),
    ('BIF', 0, 'Burundian franc'),
    ('BMD', 2, 'Bermudian dollar'),
    ('BND', 2, 'Brunei dollar'),
    ('BOB', 2, 'Boliviano'),
    ('BOV', 2, 'Bolivian Mvdol'),
    ('BRL', 2, 'Brazilian real'),
    ('BSD', 2, 'Bahamian dollar'),
    ('BTN', 2, 'Bhutanese ngultrum'),
    ('BWP', 2, 'Botswana pula'),
    ('BYN', 2, 'Belarusian ruble'),
    ('BZD', 2, 'Belize dollar'),
    ('CAD', 2, 'Canadian dollar'),
    ('CDF', 2, 'Congolese franc'),
    ('CHE', 2, 'WIR Euro'),
    ('CHF', 2, 'Swiss franc'),
    ('CHW', 2, 'WIR Franc'),
    ('CLF', 4, 'Unidad de Fomento'),
    ('CLP', 0, 'Chilean peso'),
    ('CNY', 2, 'Renminbi (Chinese) yuan'),
    ('COP', 2, 'Colombian peso'),
    ('COU', 2, 'Unidad de Valor Real (UVR)'),
    ('CRC', 2, 'Costa Rican colon'),
    ('CUC', 2, 'Cuban convertible peso'),
    ('CUP', 2, 'Cuban peso'),
    ('CVE', 2, 'Cape Verdean escudo'),
    ('CZK', 2, 'Czech koruna'),
    ('DJF', 0, 'Djiboutian franc'),
    ('DKK', 2, 'Danish krone'),
    ('DOP', 2, 'Dominican peso'),
    ('DZD', 2, 'Algerian dinar'),
    ('EGP', 2, 'Egyptian pound'),
    ('ERN', 2, 'Eritrean nakfa'),
    ('ETB', 2, 'Ethiopian birr'),
    ('EUR', 2, 'Euro'),
    ('FJD', 2, 'Fiji dollar'),
    ('FKP', 2, 'Falkland Islands pound'),
    ('GBP', 2, 'Pound sterling'),
    ('GEL', 2, 'Georgian lari'),
    ('GHS', 2, 'Ghanaian cedi'),
    ('GIP', 2, 'Gibraltar pound'),
    ('GMD', 2, 'Gambian dalasi'),
    ('GNF', 0, 'Guinean franc'),
    ('GTQ', 2, 'Guatemalan quetzal'),
    ('GYD', 2, 'Guyanese dollar'),
    ('HKD', 2, 'Hong Kong dollar'),
    ('HNL', 2, 'Honduran lempira'),
    ('HRK', 2, 'Croatian kuna'),
    ('HTG', 2, 'Haitian gourde'),
    ('HUF', 2, 'Hungarian forint'),
    ('IDR', 2, 'Indonesian rupiah'),
    ('ILS', 2, 'Israeli new shekel'),
    ('INR', 2, 'Indian rupee'),
    ('IQD', 3, 'Iraqi dinar'),
    ('IRR', 2, 'Iranian rial'),
    ('ISK', 0, 'Icelandic króna'),
    ('JMD', 2, 'Jamaican dollar'),
    ('JOD', 3, 'Jordanian dinar'),
    ('JPY', 0, 'Japanese yen'),
    ('KES', 2, 'Kenyan shilling'),
    ('KGS', 2, 'Kyrgyzstani som'),
    ('KHR', 2, 'Cambodian riel'),
    ('KMF', 0, 'Comoro franc'),
    ('KPW', 2, 'North Korean won'),
    ('KRW', 0, 'South Korean won'),
    ('KWD', 3, 'Kuwaiti dinar'),
    ('KYD', 2, 'Cayman Islands dollar'),
    ('KZT', 2, 'Kazakhstani tenge'),
    ('LAK', 2, 'Lao kip'),
    ('LBP', 2, 'Lebanese pound'),
    ('LKR', 2, 'Sri Lankan rupee'),
    ('LRD', 2, 'Liberian dollar'),
    ('LSL', 2, 'Lesotho loti'),
    ('LYD', 3, 'Libyan dinar'),
    ('MAD', 2, 'Moroccan dirham'),
    ('MDL', 2, 'Moldovan leu'),
    ('MGA', 2, 'Malagasy ariary'),
    ('MKD', 2, 'Macedonian denar'),
    ('MMK', 2, 'Myanmar kyat'),
    ('MNT', 2, 'Mongolian tögrög'),
    ('MOP', 2, 'Macanese pataca'),
    ('MRU', 2, 'Mauritanian ouguiya'),
    ('MUR', 2, 'Mauritian rupee'),
    ('MVR', 2, 'Maldivian rufiyaa'),
    ('MWK', 2, 'Malawian kwacha'),
    ('MXN', 2, 'Mexican peso'),
    ('MXV', 2, 'Mexican Unidad de Inversion (UDI)'),
    ('MYR', 2, 'Malaysian ringgit'),
    ('MZN', 2, 'Mozambican metical'),
    ('NAD', 2, 'Namibian dollar'),
    ('NGN', 2, 'Nigerian naira'),
    ('NIO', 2, 'Nicaraguan córdoba'),
    ('NOK', 2, 'Norwegian krone'),
    ('NPR', 2, 'Nepalese rupee'),
    ('NZD', 2, 'New Zealand dollar'),
    ('OMR', 3, 'Omani rial'),
    ('PAB', 2, 'Panamanian balboa'),
    ('PEN', 2, 'Peruvian sol'),
    ('PGK', 2, 'Papua New Guinean kina'),
    ('PHP', 2, 'Philippine peso'),
    ('PKR', 2, 'Pakistani rupee'),
    ('PLN', 2, 'Polish złoty'),
    ('PYG', 0, 'Paraguayan guaraní'),
    ('QAR', 2, 'Qatari riyal'),
    ('RON', 2, 'Romanian leu'),
    ('RSD', 2, 'Serbian dinar'),
    ('RUB', 2, 'Russian ruble'),
    ('RWF', 0, 'Rwandan franc'),
    ('SAR', 2, 'Saudi riyal'),
    ('SBD', 2, 'Solomon Islands dollar'),
    ('SCR', 2, 'Seychelles rupee'),
    ('SDG', 2, 'Sudanese pound'),
    ('SEK', 2, 'Swedish krona/kronor'),
    ('SGD', 2, 'Singapore dollar'),
    ('SHP', 2, 'Saint Helena pound'),
    ('SLE', 2, 'Sierra Leonean leone'),
    ('SLL', 2, 'Sierra Leonean leone'),
    ('SOS', 2, 'Somali shilling'),
    ('SRD', 2, 'Surinamese dollar'),
    ('SSP', 2, 'South Sudanese pound'),
    ('STN', 2, 'São Tomé and Príncipe dobra'),
    ('SVC', 2, 'Salvadoran colón'),
    ('SYP', 2, 'Syrian pound'),
    ('SZL', 2, 'Swazi lilangeni'),
    ('THB', 2, 'Thai baht'),
    ('TJS', 2, 'Tajikistani somoni'),
    ('TMT', 2, 'Turkmenistan manat'),
    ('TND', 3, 'Tunisian dinar'),
    ('TOP', 2, 'Tongan paʻanga'),
    ('TRY', 2, 'Turkish lira'),
    ('TTD', 2, 'Trinidad and Tobago dollar'),
    ('TWD', 2, 'New Taiwan dollar'),
    ('TZS', 2, 'Tanzanian shilling'),
    ('UAH', 2, 'Ukrainian hryvnia'),
    ('UGX', 0, 'Ugandan shilling'),
    ('USD', 2, 'United States dollar'),
    ('USN', 2, 'United States dollar (next day)'),
    ('UYI', 0, 'Uruguay Peso en Unidades Indexadas (URUIURUI)'),
    ('UYU', 2, 'Uruguayan peso'),
    ('UYW', 4, 'Unidad previsional'),
    ('UZS', 2, 'Uzbekistan som'),
    ('VED', 2, 'Venezuelan bolívar soberano'),
    ('VES', 2, 'Venezuelan bolívar soberano'),
    ('VND', 0, 'Vietnamese đồng'),
    ('VUV', 0, 'Vanuatu vatu'),
    ('WST', 2, 'Samoan tala'),
    ('XAF', 0, 'CFA franc BEAC'),
    ('XCD', 2, 'East Caribbean dollar'),
    ('XCG', 2, 'Caribean guilder'),
    ('XOF', 0, 'CFA franc BCEAO'),
    ('XPF', 0, 'CFP franc (franc Pacifique)'),
    ('YER', 2, 'Yemeni rial'),
    ('ZAR', 2, 'South African rand'),
    ('ZMW', 2, 'Zambian kwacha'),
    ('ZWG', 2, 'Zimbabwe Gold'),
    ('ZWL', 2, 'Zimbabwean dollar');

-- Codes already used by accounts of an existing ledger (LEDGERLINE_EXTRA_CURRENCIES before this
-- migration) keep the largest scale their lines were written with (0 when they have none yet).
INSERT INTO assets (code, scale, description)
SELECT a.currency, COALESCE(max(scale(l.amount)), 0), 'added by migration 0011 from existing accounts'
FROM accounts a LEFT JOIN journal_lines l ON l.currency = a.currency
WHERE NOT EXISTS (SELECT 1 FROM assets s WHERE s.code = a.currency)
GROUP BY a.currency;

-- Wider codes in the journal; an account's asset must exist.
ALTER TABLE accounts DROP CONSTRAINT accounts_currency_check;
ALTER TABLE accounts ALTER COLUMN currency TYPE text;
ALTER TABLE accounts ADD CONSTRAINT accounts_currency_asset FOREIGN KEY (currency) REFERENCES assets (code);
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_currency_check;
ALTER TABLE journal_lines ALTER COLUMN currency TYPE text;
ALTER TABLE journal_lines ADD CONSTRAINT journal_lines_currency_code CHECK (currency ~ '^[A-Z0-9_-]{1,32}$');

-- An asset's scale is part of what its lines mean: it cannot change once a line uses it, and an
-- asset is never removed (accounts reference it).
CREATE FUNCTION ledgerline_asset_scale_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.code IS DISTINCT FROM OLD.code THEN
        RAISE EXCEPTION 'asset % cannot be renamed', OLD.code USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.scale <> OLD.scale
       AND EXISTS (SELECT 1 FROM accounts a JOIN journal_lines l ON l.account_id = a.id
                   WHERE a.currency = OLD.code LIMIT 1) THEN
        RAISE EXCEPTION 'asset % has journal lines: its scale (%) cannot change', OLD.code, OLD.scale
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER assets_scale_fixed BEFORE UPDATE ON assets
    FOR EACH ROW EXECUTE FUNCTION ledgerline_asset_scale_fixed();

GRANT SELECT ON assets TO ledgerline_writer, ledgerline_reader;
