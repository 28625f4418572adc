//! Plain-language explanations of ISO 20022 status reason codes (ExternalStatusReason1Code and
//! return reasons), in English and Chinese, for the people who read the result reports.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    En,
    Zh,
}

/// (code, English, Chinese)
const REASONS: &[(&str, &str, &str)] = &[
    ("AC01", "the account number is wrong", "收款账号错误"),
    (
        "AC02",
        "the debtor account number is invalid",
        "付款账号无效",
    ),
    (
        "AC03",
        "the creditor account number is invalid",
        "收款账号无效",
    ),
    ("AC04", "the account is closed", "收款账户已销户"),
    ("AC05", "the debtor account is closed", "付款账户已销户"),
    ("AC06", "the account is blocked", "收款账户已冻结"),
    ("AC07", "the creditor account is closed", "收款账户已关闭"),
    (
        "AC13",
        "the debtor account type is not allowed",
        "付款账户类型不允许",
    ),
    (
        "AG01",
        "this kind of transaction is not allowed on the account",
        "该账户不允许此类交易",
    ),
    (
        "AG02",
        "the bank operation code is invalid",
        "银行业务代码无效",
    ),
    (
        "AG03",
        "the transaction type is not supported",
        "不支持的交易类型",
    ),
    ("AM01", "the amount is zero", "金额为零"),
    (
        "AM02",
        "the amount is above the allowed maximum",
        "金额超过允许的上限",
    ),
    ("AM03", "the currency is not allowed", "币种不允许"),
    (
        "AM04",
        "insufficient funds on the debtor account",
        "付款账户余额不足",
    ),
    ("AM05", "a duplicate of an earlier payment", "重复支付"),
    (
        "AM06",
        "the amount is below the agreed minimum",
        "金额低于约定下限",
    ),
    (
        "AM07",
        "the amount was blocked by a regulator",
        "金额被监管机构冻结",
    ),
    (
        "AM09",
        "the amount is not what was agreed",
        "金额与约定不符",
    ),
    ("AM10", "the control sum is wrong", "控制总额不符"),
    (
        "BE01",
        "the name does not match the account holder",
        "户名与账号不符",
    ),
    (
        "BE04",
        "the creditor's address is missing or wrong",
        "收款人地址缺失或错误",
    ),
    (
        "BE05",
        "the initiating party is not recognised",
        "发起方无法识别",
    ),
    (
        "BE06",
        "the end customer is not known to the bank",
        "银行不认识该客户",
    ),
    (
        "BE07",
        "the debtor's address is missing or wrong",
        "付款人地址缺失或错误",
    ),
    (
        "CH03",
        "the requested execution date is too far in the future",
        "要求执行日期过远",
    ),
    (
        "CH04",
        "the requested execution date is too far in the past",
        "要求执行日期已过",
    ),
    (
        "CNOR",
        "the creditor's bank is not registered for this kind of payment",
        "收款行未开通此类支付",
    ),
    ("CURR", "the currency is wrong", "币种错误"),
    (
        "CUST",
        "cancelled at the customer's request",
        "应客户要求取消",
    ),
    (
        "DNOR",
        "the debtor's bank is not registered for this kind of payment",
        "付款行未开通此类支付",
    ),
    (
        "DS02",
        "an authorised user cancelled the order",
        "授权用户撤销了指令",
    ),
    ("DT01", "the date is invalid", "日期无效"),
    ("DU01", "the message id is a duplicate", "报文编号重复"),
    (
        "DU02",
        "the payment information block id is a duplicate",
        "批次编号重复",
    ),
    ("DU03", "the transaction is a duplicate", "交易重复"),
    ("DU05", "the instruction id is a duplicate", "指令编号重复"),
    ("DUPL", "a duplicate payment", "重复支付"),
    ("ED05", "settlement failed", "清算失败"),
    ("FF01", "the file format is invalid", "文件格式错误"),
    (
        "FF05",
        "the local instrument code is invalid",
        "本地工具代码无效",
    ),
    (
        "FOCR",
        "returned after a cancellation request",
        "应撤销请求退回",
    ),
    ("MD01", "there is no mandate", "无授权"),
    ("MD06", "refund requested by the debtor", "付款人要求退款"),
    ("MD07", "the account holder has died", "账户持有人已故"),
    (
        "MS02",
        "refused by the creditor (reason not given)",
        "收款人拒绝（未说明原因）",
    ),
    (
        "MS03",
        "refused by the bank (reason not given)",
        "银行拒绝（未说明原因）",
    ),
    ("NARR", "see the bank's text", "见银行说明"),
    ("NOAS", "no answer from the customer", "客户未答复"),
    (
        "NOOR",
        "the original transaction was not received",
        "未收到原交易",
    ),
    (
        "RC01",
        "the bank identifier (BIC) is wrong",
        "银行代码（BIC）错误",
    ),
    (
        "RC03",
        "the debtor's bank identifier is wrong",
        "付款行代码错误",
    ),
    (
        "RC04",
        "the creditor's bank identifier is wrong",
        "收款行代码错误",
    ),
    ("RF01", "the reference is not unique", "业务参考号不唯一"),
    (
        "RR01",
        "the debtor's account or identification is missing (regulatory)",
        "缺少付款人账户或身份信息（监管要求）",
    ),
    (
        "RR02",
        "the debtor's name or address is missing (regulatory)",
        "缺少付款人名称或地址（监管要求）",
    ),
    (
        "RR03",
        "the creditor's name or address is missing (regulatory)",
        "缺少收款人名称或地址（监管要求）",
    ),
    ("RR04", "a regulatory reason", "监管原因"),
    (
        "SL01",
        "a service the bank offers the debtor refused it",
        "银行特定服务拒绝",
    ),
    (
        "TM01",
        "received after the bank's cut-off time",
        "超过银行截止时间",
    ),
    ("UPAY", "the payment is not justified", "支付依据不足"),
];

/// The explanation of a reason code, or `None` for a code this table does not know.
pub fn explain(code: &str, lang: Language) -> Option<&'static str> {
    REASONS
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, en, zh)| match lang {
            Language::En => *en,
            Language::Zh => *zh,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_both_languages() {
        assert_eq!(
            explain("AC01", Language::En),
            Some("the account number is wrong")
        );
        assert_eq!(explain("AM04", Language::Zh), Some("付款账户余额不足"));
        assert_eq!(explain("ZZ99", Language::En), None);
        let mut codes: Vec<&str> = REASONS.iter().map(|r| r.0).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), REASONS.len(), "duplicate codes");
    }
}
