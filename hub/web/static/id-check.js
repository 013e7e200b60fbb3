// Checks an ID number (GB 11643) or a unified social credit code (GB 32100) as the clerk types.
// The server stays the authority: it answers 422 with the reason for anything this lets through.
(function () {
  "use strict";
  var input = document.getElementById("id");
  var status = document.getElementById("id-status");
  if (!input || !status) return;
  var W18 = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  var C18 = "10X98765432";
  var CODE = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  var W32 = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
  var zh = document.documentElement.lang !== "en";
  function msg(cn, en) { return zh ? cn : en; }
  function normalise(v) {
    return v.normalize("NFKC").replace(/[\s\u200b-\u200d\ufeff-]/g, "").toUpperCase();
  }
  function person(v) {
    if (!/^\d{17}[\dX]$/.test(v)) return msg("身份证号应为 17 位数字加 1 位校验码", "an ID number is 17 digits and a check character");
    var y = +v.slice(6, 10), m = +v.slice(10, 12), d = +v.slice(12, 14);
    var born = new Date(Date.UTC(y, m - 1, d));
    if (born.getUTCFullYear() !== y || born.getUTCMonth() !== m - 1 || born.getUTCDate() !== d || y < 1900)
      return msg("出生日期不存在", "the birth date does not exist");
    if (born > new Date()) return msg("出生日期在未来", "the birth date is in the future");
    var sum = 0;
    for (var i = 0; i < 17; i++) sum += (+v[i]) * W18[i];
    if (C18[sum % 11] !== v[17]) return msg("校验码不符（可能输错一位）", "the check character does not match (a mistyped digit?)");
    return null;
  }
  function organisation(v) {
    for (var i = 0; i < 18; i++) if (CODE.indexOf(v[i]) < 0) return msg("信用代码含有不允许的字符", "the credit code has a character it cannot have");
    var sum = 0;
    for (var j = 0; j < 17; j++) sum += CODE.indexOf(v[j]) * W32[j];
    if (CODE[(31 - sum % 31) % 31] !== v[17]) return msg("信用代码校验码不符", "the credit code's check character does not match");
    return null;
  }
  function check() {
    var v = normalise(input.value);
    var problem = null;
    if (v.length === 0) { status.textContent = status.dataset.hint; status.className = "hint"; input.setCustomValidity(""); return; }
    if (v.length < 18) problem = msg("还差 " + (18 - v.length) + " 位", (18 - v.length) + " more characters");
    else if (v.length > 18) problem = msg("长度超过 18 位", "longer than 18 characters");
    else problem = /^\d{6}(18|19|20)\d{9}[\dX]$/.test(v) ? person(v) : organisation(v);
    status.textContent = problem ? problem : msg("格式与校验码正确", "format and check character are valid");
    status.className = problem ? "hint bad" : "hint good";
    input.setCustomValidity(v.length === 18 && problem ? problem : "");
  }
  input.addEventListener("input", check);
  check();
})();
