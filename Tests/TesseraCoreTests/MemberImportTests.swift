import Testing
import TesseraCore

@Suite("Reading an import file")
struct MemberImportTests {
    @Test("CSV: quoted fields with commas, doubled quotes and line breaks, CRLF, a byte order mark; lines counted where records start")
    func csvShapes() {
        let text = "\u{FEFF}phone,name,card,store\r\n+15550100,\"Ada \"\"the\"\" first\",A|B,s1\r\n+15550101,\"Bob\nSmith\",,s2\r\n+15550102,Cy,,s1\r\n"
        let (rows, problems) = MemberImport.read(Array(text.utf8), format: .csv)
        #expect(problems.isEmpty)
        #expect(rows.map(\.line) == [2, 3, 5])
        #expect(rows[0].name == "Ada \"the\" first" && rows[0].cards == [CardNumber("A"), CardNumber("B")])
        #expect(rows[1].name == "Bob\nSmith" && rows[1].store.rawValue == "s2")
    }

    @Test("every bad row is reported with its line and reason: formats, amounts not in minor units, duplicates within the file")
    func badRows() {
        let text = """
            phone,name,birthday,card,principal,points,store
            +15550100,Ada,1990-13-01,,0,0,s1
            +15550101,Bob,,X1,12.50,0,s1
            +15550102,,,,0,0,s1
            +1 555 0103,Dee,,X2,0,0,s1
            +15550103,Eve,,X3,0,0,s1
            +15550104,Fay,,X2,0,0,s1
            +15550105,Gus,,,0,-5,s1
            +15550106,Hal,,,0,0,Not A Store
            +15550107,Ida,,,0
            """
        let (rows, problems) = MemberImport.read(Array(text.utf8), format: .csv)
        #expect(rows.map(\.line) == [5])
        #expect(problems.map(\.line) == [10, 2, 3, 4, 6, 7, 8, 9])
        let byLine = Dictionary(uniqueKeysWithValues: problems.map { ($0.line, $0.message) })
        #expect(byLine[2]?.contains("birthday") == true)
        #expect(byLine[3]?.contains("minor units") == true)
        #expect(byLine[4]?.contains("name") == true)
        #expect(byLine[6]?.contains("also on line 5") == true)
        #expect(byLine[7]?.contains("card X2 is also on line 5") == true)
        #expect(byLine[8]?.contains("points") == true)
        #expect(byLine[9]?.contains("store") == true)
        #expect(byLine[10]?.contains("fields where the header has") == true)
    }

    @Test("the header is checked: unknown and missing columns; a default store stands in for the column")
    func header() {
        #expect(MemberImport.read(Array("phone,name,balance,store\n".utf8), format: .csv).problems.first?.message.contains("unknown column 'balance'") == true)
        #expect(MemberImport.read(Array("phone,name\n+15550100,Ada\n".utf8), format: .csv).problems.first?.message.contains("'store'") == true)
        let (rows, problems) = MemberImport.read(Array("phone,name\n+15550100,Ada\n".utf8), format: .csv, defaultStore: StoreID(rawValue: "s9"))
        #expect(problems.isEmpty && rows.first?.store.rawValue == "s9")
        #expect(MemberImport.read([], format: .csv).problems.count == 1)
    }

    @Test("JSON lines: numbers or strings, a list of cards, unknown fields refused")
    func jsonLines() {
        let text = """
            {"phone":"+15550100","name":"Ada","principal":1000,"card":["A","B"],"store":"s1"}

            {"phone":"+15550101","name":"Bob","principal":"250","store":"s1","colour":"red"}
            not json
            {"phone":"+15550102","name":"Cy","principal":1.5,"store":"s1"}
            """
        let (rows, problems) = MemberImport.read(Array(text.utf8), format: .jsonLines)
        #expect(rows.map(\.line) == [1] && rows[0].principal == 1_000 && rows[0].cards.count == 2)
        #expect(problems.map(\.line) == [3, 4, 5])
    }

    @Test("a field written with a ' against formulas reads back as it was; CSV.field quotes what needs it")
    func formulaGuard() {
        #expect(CSV.field("+15550100") == "'+15550100")
        #expect(CSV.field("=SUM(A1)") == "'=SUM(A1)")
        #expect(CSV.field("-5") == "-5")
        #expect(CSV.field("a,b") == "\"a,b\"")
        let (rows, _) = MemberImport.read(Array("phone,name,store\n'+15550100,'=Ada,s1\n".utf8), format: .csv)
        #expect(rows.first?.phone == "+15550100" && rows.first?.name == "=Ada")
    }
}
