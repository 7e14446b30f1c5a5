// Haraka plugin of the edge benchmark (bench/mta/servers/haraka.ts): accepts a recipient only if
// it is one of the aliases Postern and Postfix know in the same run (config/bench_aliases, one
// address per line, held in memory like Postfix's table), 550 for any other. Copied into the
// throwaway Haraka directory the bench creates; Haraka loads it by name from config/plugins.
'use strict';

const constants = require('haraka-constants');

exports.register = function () {
  this.aliases = new Set(this.config.get('bench_aliases', 'list').map((address) => address.toLowerCase()));
};

exports.hook_rcpt = function (next, _connection, params) {
  const rcpt = params[0];
  if (rcpt.host && this.aliases.has(`${rcpt.user}@${rcpt.host}`.toLowerCase())) return next(constants.ok);
  return next(constants.deny, 'no such mailbox here');
};
