// mailauth 7.1.0's lib/tools.js as published, before patches/mailauth+7.1.0.patch made these
// functions linear: the oracle of mailauth-patch.property.test.ts. Not used by anything else.
'use strict';

const NON_ASCII = /[^\x00-\x7f]/;
const lowerCaseASCII = str => (NON_ASCII.test(str) ? str.replace(/[A-Z]/g, c => c.toLowerCase()) : str.toLowerCase());
const FIELD_START = /^[\x21-\x39\x3b-\x7e]+[ \t\r\n]*:/;

const startsField = row =>
    // only the start of the row decides this, and a fold can push the colon no further
    // than onto the line after the name
    FIELD_START.test(row.length > 1 ? `${row[0]}\r\n${row[1]}` : row[0]);

const parseHeaders = buf => {
    let rows = buf
        .toString('binary')
        .replace(/[\r\n]+$/, '')
        .split(/\r?\n/)
        .map(row => [row]);

    if (rows.length === 1 && !rows[0][0]) {
        // nothing to parse, rather than one row that is not a header
        return { parsed: [], original: buf };
    }

    for (let i = rows.length - 1; i > 0; i--) {
        if (!startsField(rows[i])) {
            rows[i - 1] = rows[i - 1].concat(rows[i]);
            rows.splice(i, 1);
        }
    }

    rows = rows.map(row => {
        row = row.join('\r\n');
        let key = row.match(/^[^:]+/);
        let casedKey;
        if (key) {
            // a fold may sit between the field name and the colon, and the CRLF it leaves
            // behind is not part of the name. Without this the key of a header folded that
            // way matches nothing, and a From read by every MUA stops being a From here
            casedKey = key[0];
            if (casedKey.indexOf('\n') >= 0) {
                casedKey = casedKey.replace(/\r?\n/g, '');
            }
            casedKey = casedKey.replace(/^[ \t]+|[ \t]+$/g, '');
            key = lowerCaseASCII(casedKey);
        }

        return { key, casedKey, line: Buffer.from(row, 'binary') };
    });

    return { parsed: rows, original: buf };
};

const normalizeFieldNames = fieldNames =>
    fieldNames
        .split(':')
        .map(key => lowerCaseASCII(key.replace(/^[ \t]+|[ \t]+$/g, '')))
        .filter(key => key);

const getSigningHeaderLines = (parsedHeaders, fieldNames, verify) => {
    // an h= tag is attacker controlled on inbound mail, so only the constant default list
    // is normalized ahead of time
    fieldNames = typeof fieldNames === 'string' ? normalizeFieldNames(fieldNames) : defaultDKIMFieldNamesNormalized;

    let signingList = [];

    if (verify) {
        let parsedList = [].concat(parsedHeaders);
        for (let fieldName of fieldNames) {
            for (let i = parsedList.length - 1; i >= 0; i--) {
                let header = parsedList[i];
                if (fieldName === header.key) {
                    signingList.push(header);
                    parsedList.splice(i, 1);
                    break;
                }
            }
        }
    } else {
        for (let i = parsedHeaders.length - 1; i >= 0; i--) {
            let header = parsedHeaders[i];
            if (fieldNames.includes(header.key)) {
                signingList.push(header);
            }
        }
    }

    return {
        keys: signingList.map(entry => entry.casedKey).join(': '),
        headers: signingList
    };
};

module.exports = { parseHeaders, getSigningHeaderLines };
